"""``python -m dropstudy_experiments NAME [options]``: the study's one entry point.

The same as ``dropstudy run NAME [options]``; a first argument that names another command
(``report``, ``compare``, ...) runs that command, as ``dropstudy`` does.
"""

from __future__ import annotations

import sys

from .cli import COMMANDS, main


def run(argv: list[str]) -> int:
    """Run the command ``argv`` asks for: ``dropstudy run ...`` unless it names one.

    A first argument that names another command, or is an option, goes to :func:`.cli.main` as
    it is.

    Args:
      argv: the arguments, without the program's name.

    Returns:
      The exit status.
    """
    if argv and (argv[0] in COMMANDS or argv[0].startswith("-")):
        return main(argv)
    return main(["run", *argv])


if __name__ == "__main__":
    sys.exit(run(sys.argv[1:]))
