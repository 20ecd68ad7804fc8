%%% Managed by Salt (salt/ejabberd). Partition handling for an ejabberd cluster on
%%% Mnesia, after RabbitMQ's pause_minority (rabbit_node_monitor.erl): a node that
%%% cannot see a majority of the cluster's members stops serving clients at once, and
%%% heals itself by restarting once a majority answers again, so that Mnesia reloads
%%% its tables from that majority. No person and no Salt run needed.
%%%
%%% Why: ejabberd has no partition handling (Mnesia's inconsistent_database is only
%%% logged, processone/ejabberd#2593). A cut longer than the distribution's tick
%%% (net_ticktime, 60 s) splits the cluster for good, both halves keep serving, and a
%%% rejoin discards one side. And until the tick expires, a write that needs the
%%% unreachable node blocks on every node, the majority's clients included.
%%%
%%% Every probe_interval ms each member is asked whether Mnesia runs there, over the
%%% distribution (erpc, bounded). A member without an answer for down_after ms is
%%% disconnected at once (Mnesia sees it down: the majority's writes go on, the
%%% minority's fail their majority check: mod_durable_ack refuses them). Then, counting
%%% only members that run Mnesia with this node and answer:
%%%  - a majority (or exactly half, holding the first member in sorted order, so that
%%%    one side of an even split goes on): serve;
%%%  - otherwise fence: stop the client listeners (ejabberd_c2s), so the balancer's
%%%    health check fails, and kick every local session, so its client reconnects to
%%%    the majority; keep probing;
%%%  - fenced, and a member answers that it serves with a majority: exit with status
%%%    1; systemd restarts the node (Restart=on-failure) and Mnesia loads from them.
%%% A member that a serving member finds silent is disconnected by every serving
%%% member, not only by the one that noticed (RabbitMQ turns a partial partition into a
%%% full one the same way): else a member that wakes up between two members' verdicts
%%% stays in one's Mnesia and not in the other's, both sides keep a majority in their
%%% own view, and the cluster never becomes whole again. Only a serving member asks
%%% that, only one that runs Mnesia with the asked one is heard, and never one that
%%% was itself dropped a moment ago (two members that cannot see each other must not
%%% both be dropped by the third): a fenced member's stale view would split the
%%% majority. A node that did not run itself for down_after / 2
%%% (SIGSTOP, a starved VM) judges its peers on fresh answers only, so it never cuts
%%% off a majority that went on without it. Not covered: a member cut off from some members but not others (Mnesia cannot
%%% merge what both sides wrote), and two faults that fence every member at once.
-module(mod_quorum).
-behaviour(gen_mod).
-behaviour(gen_server).

-export([start/2, stop/1, reload/3, depends/2, mod_opt_type/1, mod_options/1, mod_doc/0]).
-export([init/1, handle_call/3, handle_cast/2, handle_info/2, terminate/2, code_change/3]).
-export([status/0, probe_answer/0, drop/2]).

-include("logger.hrl").

-record(state, {host :: binary(),
                interval :: pos_integer(),
                down_after :: pos_integer(),
                last_ok = #{} :: #{node() => integer()},
                last_serving = #{} :: #{node() => integer()},
                last_tick :: integer(),
                dropped = #{} :: #{node() => integer()},
                fenced_at :: integer() | undefined,
                fenced = false :: boolean()}).

start(Host, Opts) ->
    gen_mod:start_child(?MODULE, Host, Opts).

stop(Host) ->
    gen_mod:stop_child(?MODULE, Host).

reload(_Host, _NewOpts, _OldOpts) ->
    ok.

depends(_Host, _Opts) ->
    [].

mod_opt_type(probe_interval) -> econf:pos_int();
mod_opt_type(down_after) -> econf:pos_int().

mod_options(_Host) ->
    [{probe_interval, 1000}, {down_after, 5000}].

mod_doc() ->
    #{desc => <<"Pause a minority of the cluster; restart it when a majority is back.">>}.

%% For tests and operators, from `ejabberdctl debug`: mod_quorum:status().
status() ->
    [gen_server:call(gen_mod:get_module_proc(Host, ?MODULE), status)
     || Host <- ejabberd_option:hosts(), gen_mod:is_loaded(Host, ?MODULE)].

init([Host, Opts]) ->
    Interval = gen_mod:get_opt(probe_interval, Opts),
    erlang:send_after(Interval, self(), tick),
    set_serving(false),
    ok = net_kernel:monitor_nodes(true),
    {ok, #state{host = Host, interval = Interval, last_tick = now_ms(),
                down_after = gen_mod:get_opt(down_after, Opts)}}.

handle_call(status, _From, #state{fenced = Fenced} = S) ->
    {reply, #{node => node(), fenced => Fenced, members => members(),
              answering => answering(S, now_ms())}, S};
handle_call(_Request, _From, S) ->
    {reply, {error, badarg}, S}.

handle_cast({drop, Node, By}, #state{fenced = Fenced, dropped = Dropped} = S) ->
    Now = now_ms(),
    Heard = not Fenced
        andalso lists:member(By, mnesia:system_info(running_db_nodes))
        andalso Now - maps:get(By, Dropped, Now - S#state.down_after - 1) > S#state.down_after,
    case Heard andalso lists:member(Node, nodes()) of
        true ->
            ?WARNING_MSG("~ts: ~ts found ~ts silent: disconnecting it here too",
                         [?MODULE, By, Node]),
            erlang:disconnect_node(Node),
            {noreply, S#state{dropped = Dropped#{Node => Now}}};
        false ->
            {noreply, S}
    end;
handle_cast(_Msg, S) ->
    {noreply, S}.

handle_info(tick, #state{interval = Interval, down_after = DownAfter, last_tick = Last} = S) ->
    erlang:send_after(Interval, self(), tick),
    Now = now_ms(),
    S1 = first_seen(S#state{last_tick = Now}),
    probe(S1),
    case Now - Last > DownAfter div 2 of
        true ->
            %% This node itself did not run (SIGSTOP, a starved VM): its last answers
            %% are stale, not its peers' fault. Judge them on fresh answers only.
            ?WARNING_MSG("~ts: ~ts did not run for ~b ms; asking the members again",
                         [?MODULE, node(), Now - Last]),
            {noreply, S1#state{last_ok = maps:map(fun(_, _) -> Now end, S1#state.last_ok)}};
        false ->
            {noreply, decide(S1)}
    end;
handle_info({answer, Node, Answer}, #state{last_ok = LastOk, last_serving = Serving} = S) ->
    Now = now_ms(),
    S1 = S#state{last_ok = LastOk#{Node => Now}},
    {noreply, case Answer of
                  {yes, true} -> S1#state{last_serving = Serving#{Node => Now}};
                  _ -> S1
              end};
handle_info({nodeup, Node}, #state{last_ok = LastOk} = S) ->
    %% A new connection (a member restarted, or came back after a cut) has not been
    %% asked yet: it gets down_after like a member seen for the first time.
    {noreply, S#state{last_ok = LastOk#{Node => now_ms()}}};
handle_info(_Info, S) ->
    {noreply, S}.

terminate(_Reason, _S) ->
    ok.

code_change(_OldVsn, S, _Extra) ->
    {ok, S}.

now_ms() ->
    erlang:monotonic_time(millisecond).

members() ->
    lists:usort(mnesia:system_info(db_nodes)).

%% One short-lived process per member and probe: a partitioned member must not block
%% the monitor (a connect attempt can take net_setuptime). A slow answer still counts
%% when it comes (a busy VM is not a partition): each probe may take down_after.
probe(#state{down_after = DownAfter}) ->
    Self = self(),
    [spawn(fun() ->
                   case catch erpc:call(Node, ?MODULE, probe_answer, [], DownAfter) of
                       {_, _} = Answer -> Self ! {answer, Node, Answer};
                       _ -> ok
                   end
           end) || Node <- members() -- [node()]],
    ok.

%% A member counts as answering for down_after from the moment this monitor first
%% sees it (this node's start, or the member's join), as it has not been asked yet.
first_seen(#state{last_ok = LastOk} = S) ->
    Now = now_ms(),
    S#state{last_ok = maps:merge(maps:from_list([{N, Now} || N <- members()]), LastOk)}.

%% Members that answered within down_after (their VM is up and reachable: while a
%% member joins or restarts Mnesia it still answers and must not be cut off).
answering(#state{last_ok = LastOk, down_after = DownAfter}, Now) ->
    [Node || Node <- members() -- [node()],
             Now - maps:get(Node, LastOk, Now) =< DownAfter].

%% A serving member found Node silent: disconnect it here too (handle_cast/2 decides
%% whether to hear it), so that every member's Mnesia sees it down, whether or not it
%% answers this one meanwhile.
drop(Node, By) when Node /= node() ->
    [gen_server:cast(gen_mod:get_module_proc(Host, ?MODULE), {drop, Node, By})
     || Host <- ejabberd_option:hosts(), gen_mod:is_loaded(Host, ?MODULE)],
    ok;
drop(_Node, _By) ->
    ok.

%% What a member answers a probe: whether Mnesia runs there, and whether it serves
%% (not fenced, a majority in its own view). Any answer shows that its VM is up.
probe_answer() ->
    {mnesia:system_info(is_running), persistent_term:get({?MODULE, serving}, false)}.

set_serving(Serving) ->
    persistent_term:get({?MODULE, serving}, undefined) == Serving
        orelse persistent_term:put({?MODULE, serving}, Serving).

%% Members that said, since this node fenced itself and within down_after, that they
%% serve with a majority: what a fenced node restarts to load from. Never a fenced
%% member, nor one still starting, nor an answer from before this node's fence (two
%% members fencing at once must not restart on each other's last word): when every
%% member is fenced, no one restarts (Mnesia would let the first to start load its own,
%% possibly older, copy and give it to the others).
serving(#state{last_serving = Serving, down_after = DownAfter, fenced_at = FencedAt}, Now) ->
    Since = max(Now - DownAfter, case FencedAt of undefined -> Now - DownAfter; _ -> FencedAt end),
    [Node || Node <- members() -- [node()], maps:get(Node, Serving, Since - 1) > Since].

quorum(Nodes, Members) ->
    N = length([X || X <- lists:usort(Nodes), lists:member(X, Members)]),
    2 * N > length(Members)
        orelse (2 * N == length(Members) andalso lists:member(hd(Members), Nodes)).

decide(#state{fenced = Fenced} = S) ->
    try
        Members = members(),
        Answering = answering(S, now_ms()),
        %% Only a member that runs Mnesia with this node can hold up its writes: one
        %% that is joining or starting is left alone, however slow it answers.
        Running = mnesia:system_info(running_db_nodes),
        Silent = [Node || Node <- Members -- [node() | Answering], lists:member(Node, nodes()),
                          lists:member(Node, Running)],
        [begin
             ?WARNING_MSG("~ts: ~ts has not answered for ~b ms: disconnecting it",
                          [?MODULE, Node, S#state.down_after]),
             erlang:disconnect_node(Node)
         end || Node <- Silent],
        Serving = [node() | [N || N <- Running, lists:member(N, Answering)]],
        Reachable = [node() | serving(S, now_ms())],
        case {Fenced, quorum(Serving, Members), Reachable /= [node()]} of
            {false, true, _} ->
                set_serving(true),
                [erpc:cast(Other, ?MODULE, drop, [Node, node()])
                 || Node <- Silent, Other <- Serving -- [node()]],
                Now = now_ms(),
                S#state{dropped = maps:merge(S#state.dropped,
                                             maps:from_list([{N, Now} || N <- Silent]))};
            {false, false, _} ->
                set_serving(false),
                fence(S, Members, Serving);
            {true, _, true} ->
                heal(Members, Reachable);
            {true, _, false} ->
                S
        end
    catch Class:Reason ->
            ?WARNING_MSG("~ts: cannot decide (~p:~p)", [?MODULE, Class, Reason]),
            S
    end.

fence(#state{host = Host} = S, Members, Serving) ->
    ?WARNING_MSG("~ts: ~ts serves with ~p of ~p: not a majority; "
                 "closing client listeners and sessions until a majority answers",
                 [?MODULE, node(), Serving, Members]),
    [ejabberd_listener:delete_listener(EndPoint, ejabberd_c2s)
     || {EndPoint, ejabberd_c2s, _} <- ejabberd_option:listen()],
    Sessions = ejabberd_sm:dirty_get_my_sessions_list(),
    [ejabberd_c2s:route(element(2, element(2, Session)), kick) || Session <- Sessions],
    ?WARNING_MSG("~ts: fenced on ~ts: ~b sessions closed", [?MODULE, Host, length(Sessions)]),
    S#state{fenced = true, fenced_at = now_ms()}.

heal(Members, Reachable) ->
    ?WARNING_MSG("~ts: ~p of ~p serve again: restarting ~ts to reload from them",
                 [?MODULE, Reachable, Members, node()]),
    %% Let the logger write the line; systemd restarts the node (Restart=on-failure).
    timer:sleep(500),
    erlang:halt(1).
