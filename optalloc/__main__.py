"""``python -m optalloc`` runs the command line."""

from optalloc.cli import main

main()
