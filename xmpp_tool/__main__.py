"""``python -m xmpp_tool`` — the same as the ``xmpp-tool`` console script."""

from .cli import main

if __name__ == "__main__":
    main()
