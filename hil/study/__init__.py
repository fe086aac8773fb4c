"""Studies: sweeps of the community simulator over seeds, strategies, markets and sizes, on Dask."""
