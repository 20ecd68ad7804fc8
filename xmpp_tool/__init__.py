"""xmpp-tool: send XMPP messages and read unread ones, safely, from scripts."""

__version__ = "0.1.0"
PROG = "xmpp-tool"
