"""The `longtask` command line: run the components, and the local dev platform."""
