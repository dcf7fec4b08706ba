"""Built-in tasks: demos for trying longtask out, and realistic examples to copy from."""
