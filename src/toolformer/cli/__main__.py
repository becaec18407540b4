"""`python -m toolformer.cli`: the `toolformer` command."""

from toolformer.cli import main

main()
