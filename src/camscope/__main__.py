"""``python -m camscope``: the same command line as the ``camscope`` script."""

from camscope.cli.main import main

if __name__ == "__main__":
    main()
