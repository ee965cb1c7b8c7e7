"""The Spark layer: turns a DataFrame into persisted NumPy blocks and runs the EM loop over them."""
