"""``python -m dinomed`` runs the command line."""

from dinomed.cli import main

if __name__ == "__main__":
    main()
