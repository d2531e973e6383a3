"""``python -m aiapp.cli``."""

from aiapp.cli import main

main()
