"""Everything from files to batches: numpy/xarray only, no JAX."""
