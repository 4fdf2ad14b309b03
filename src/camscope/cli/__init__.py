"""The ``camscope`` command line: a thin layer over the library (parse, call, save)."""
