%%% Managed by Salt (salt/ejabberd). An acknowledged chat message is in its recipient's
%%% archive, on a majority of the cluster, before the sender's stream counts it.
%%%
%%% Why: ejabberd (23.01 and 24.12) acknowledges a message once the *sender's* session
%%% process has handled it, but the *recipient's* archive copy is written later:
%%%  - by the recipient's own session process (mod_mam:user_receive_packet), reached by
%%%    an Erlang send whose result is ignored (ejabberd_sm:route -> ejabberd_c2s:route);
%%%    a partition or a SIGKILL of the recipient's node between the two loses it;
%%%  - and mod_mam:store_mam_message ignores a failed write (mod_mam_mnesia:store logs
%%%    "Cannot add message to MAM archive" and the message is still acknowledged).
%%% So this module writes the recipient's copy in the sender's process, through
%%% mod_mam's own path (mod_mam:offline_message/1: prefs, stanza-id, no-store hints),
%%% inside a sync_transaction on archive_msg, which this module makes a majority table:
%%% the write commits on every reachable replica or on none, and never on a minority.
%%% The packet leaves marked as archived (a <stanza-id/> by the recipient), so mod_mam
%%% does not store it twice, online or offline.
%%%
%%% A commit is not yet proof: a majority table commits with Mnesia's asym_trans, and
%%% when this node is cut off right after its own commit, before its `committed` reaches
%%% the other replicas, they find no one who knows the outcome and abort
%%% (mnesia_recover:check_what_happened: "None of the active nodes knows -> aborted"),
%%% while this node keeps its copy until mod_quorum restarts it, then reloads from them.
%%% So the copy must also be seen on a majority of the replicas (this one and enough
%%% others, asked directly) within confirm_timeout, as Jepsen's checkers read back what
%%% was acknowledged. When the write fails or is not seen there the message is dropped
%%% and the stream is closed with an error before anything acknowledges it: refused,
%%% never lost. Group chat messages (mod_muc) are not covered.
-module(mod_durable_ack).
-behaviour(gen_mod).

-export([start/2, stop/1, reload/3, depends/2, mod_opt_type/1, mod_options/1, mod_doc/0]).
-export([user_send_packet/1]).

-include("xmpp.hrl").
-include("logger.hrl").
-include("mod_mam.hrl").

%% After mod_mam's own user_send_packet hooks (88: the sender's copy; 500: stripping
%% the client's stanza-ids), before the packet is routed.
-define(PRIORITY, 600).
%% How long one look at a replica that has no answer yet may hold up the next look.
-define(POLL_MS, 5).

start(Host, _Opts) ->
    ensure_majority(archive_msg),
    ejabberd_hooks:add(user_send_packet, Host, ?MODULE, user_send_packet, ?PRIORITY),
    ok.

stop(Host) ->
    ejabberd_hooks:delete(user_send_packet, Host, ?MODULE, user_send_packet, ?PRIORITY),
    ok.

reload(_Host, _NewOpts, _OldOpts) ->
    ok.

depends(_Host, _Opts) ->
    [{mod_mam, hard}].

mod_opt_type(confirm_timeout) -> econf:pos_int().

mod_options(_Host) ->
    [{confirm_timeout, 5000}].

mod_doc() ->
    #{desc => <<"Store the recipient's archive copy before acknowledging a message.">>}.

%% A majority table refuses a transactional write unless more than half of its
%% replicas are reachable (mnesia:change_table_majority/2). A schema change: it needs
%% every replica up; it is tried at every start until it holds.
ensure_majority(Tab) ->
    case catch mnesia:table_info(Tab, majority) of
        true ->
            ok;
        _ ->
            case mnesia:change_table_majority(Tab, true) of
                {atomic, ok} ->
                    ?INFO_MSG("~ts: ~ts is now a majority table", [?MODULE, Tab]);
                Err ->
                    ?WARNING_MSG("~ts: cannot make ~ts a majority table: ~p", [?MODULE, Tab, Err])
            end
    end.

user_send_packet({#message{to = #jid{luser = LUser, lserver = LServer} = To} = Pkt,
                  #{jid := JID} = State}) when LUser /= <<"">> ->
    case ejabberd_router:is_my_host(LServer)
         andalso gen_mod:is_loaded(LServer, mod_mam)
         andalso ejabberd_auth:user_exists(LUser, LServer) of
        true -> store_first(Pkt, JID, To, State);
        false -> {Pkt, State}
    end;
user_send_packet(Acc) ->
    Acc.

store_first(Pkt, JID, #jid{luser = LUser, lserver = LServer} = To, State) ->
    ID = mod_mam:make_id(),
    Pkt1 = xmpp:put_meta(xmpp:set_from_to(Pkt, JID, To), stanza_id, ID),
    US = {LUser, LServer},
    Copy = #archive_msg{us = US, id = integer_to_binary(ID), _ = '_'},
    Write = fun() ->
                    %% The lock is taken at this level, so no majority means this
                    %% transaction aborts here (mod_mam's inner one would only log it).
                    mnesia:lock({record, archive_msg, US}, write),
                    case mod_mam:offline_message({none, Pkt1}) of
                        {archived, Pkt2} ->
                            %% Written by the inner transaction, or mod_mam swallowed
                            %% its failure: look.
                            Stored = mnesia:match_object(Copy),
                            Stored /= [] orelse mnesia:abort(not_stored),
                            {archived, Pkt2};
                        _ ->
                            not_archived
                    end
            end,
    Timeout = gen_mod:get_module_opt(LServer, ?MODULE, confirm_timeout),
    Outcome = case mnesia:sync_transaction(Write) of
                  {atomic, {archived, _} = Archived} ->
                      case on_majority(Copy, Timeout) of
                          true -> Archived;
                          false -> {aborted, {not_seen_on_a_majority, Timeout}}
                      end;
                  Other ->
                      Other
              end,
    case Outcome of
        {archived, Pkt2} ->
            {Pkt2, State};
        {atomic, not_archived} ->
            %% mod_mam would not archive it (no body, a no-store hint, prefs).
            {Pkt, State};
        {aborted, Reason} ->
            ?WARNING_MSG("~ts: refusing a message from ~ts to ~ts: not stored (~w); "
                         "closing the stream before it is acknowledged",
                         [?MODULE, jid:encode(JID), jid:encode(To), Reason]),
            Err = xmpp:serr_internal_server_error(
                    <<"Message not stored on a majority of the cluster">>, <<"en">>),
            {stop, {drop, ejabberd_c2s:send(State, Err)}}
    end.

%% Whether Copy is on a majority of archive_msg's replicas: this node's (just committed)
%% and enough of the others that are active, asked directly. A replica may apply the
%% commit a moment after this node does, so one without the copy is asked again until
%% Timeout. Done in a helper process: answers that come after it gave up die with it,
%% instead of reaching the session's mailbox.
on_majority(Copy, Timeout) ->
    Need = length(mnesia:table_info(archive_msg, all_nodes)) div 2,
    Others = mnesia:table_info(archive_msg, where_to_write) -- [node()],
    Deadline = now_ms() + Timeout,
    {Pid, MRef} = spawn_monitor(
                    fun() -> exit({on_majority, look(ask(Others, Copy), Copy, Need, Deadline)}) end),
    receive
        {'DOWN', MRef, process, Pid, Reason} -> Reason == {on_majority, true}
    after Timeout + 1000 ->
            exit(Pid, kill),
            false
    end.

ask(Nodes, Copy) ->
    [{erpc:send_request(Node, ets, match_object, [archive_msg, Copy]), Node} || Node <- Nodes].

look(_Pending, _Copy, Need, _Deadline) when Need =< 0 ->
    true;
look([], _Copy, _Need, _Deadline) ->
    false;
look(Pending, Copy, Need, Deadline) ->
    case now_ms() >= Deadline of
        true ->
            false;
        false ->
            %% Wait a little for the first one only, then take what the others have.
            Waits = [?POLL_MS | lists:duplicate(length(Pending) - 1, 0)],
            {Need1, Waiting, Again} =
                lists:foldl(
                  fun({{Req, Node} = P, Wait}, {N, W, A}) ->
                          case catch erpc:wait_response(Req, Wait) of
                              no_response -> {N, [P | W], A};
                              {response, [_ | _]} -> {N - 1, W, A};
                              {response, []} -> {N, W, [Node | A]};
                              _Unreachable -> {N, W, A}
                          end
                  end, {Need, [], []}, lists:zip(Pending, Waits)),
            %% Not there yet: the replica applies the commit a moment after this node.
            Again /= [] andalso Waiting == [] andalso Need1 > 0
                andalso timer:sleep(?POLL_MS),
            look(lists:reverse(Waiting) ++ ask(Again, Copy), Copy, Need1, Deadline)
    end.

now_ms() ->
    erlang:monotonic_time(millisecond).
