"""unread's options: which chats and rooms a run reads (POSIX syntax as elsewhere)."""

from __future__ import annotations

import pytest

from xmpp_tool.cli import parse
from xmpp_tool.request import UnreadRequest


@pytest.mark.parametrize(("argv", "scope", "rooms"), [
    (["unread"], "all", ()),
    (["unread", "-g"], "rooms", ()),
    (["unread", "--groupchats"], "rooms", ()),
    (["unread", "-G"], "chats", ()),
    (["unread", "-r", "Ops@conference.x"], "rooms", ("Ops@conference.x",)),
    (["unread", "-rOps@conference.x", "--room", "b@conference.x"], "rooms",
     ("Ops@conference.x", "b@conference.x")),
    (["unread", "-g", "-r", "a@conference.x"], "rooms", ("a@conference.x",)),
    (["unread", "-cg"], "rooms", ()),
])
def test_scope_and_rooms(argv: list[str], scope: str, rooms: tuple[str, ...]) -> None:
    request = parse(argv)
    assert isinstance(request, UnreadRequest)
    assert (request.scope, request.rooms) == (scope, rooms)


def test_an_operand_is_not_an_option() -> None:
    """unread takes no operands: "-g" after one is not read as an option."""
    from xmpp_tool.errors import ToolError

    with pytest.raises(ToolError, match="unexpected extra argument"):
        parse(["unread", "ops@conference.x", "-g"])
