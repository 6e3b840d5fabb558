"""`python -m poold`: the command line (`poold.cli`)."""

from poold.cli import main

if __name__ == "__main__":
    main()
