{#- Rooms from pillar (ejabberd:muc:rooms), created and kept on the seed node only
    (Mnesia's muc_room table is on every member): persistent, members-only, hidden,
    archived as muc:archive says; each member affiliated, and given a XEP-0402 bookmark
    of the room, published as that user.
    Every call goes to the local ReST API at command version 1 (api_v1, osfinger.yaml):
    24.12's newest set_room_affiliation takes user and host apart, version 1 is 23.01's
    and 24.12's alike. Reads decide what to do, so a re-apply changes nothing; a bookmark
    cannot be read back through the API, so a marker (its content's SHA-256) says it
    was published, as for the users' passwords. #}
{%- set tplroot = tpldir.split('/')[0] %}
{%- from tplroot ~ '/map.jinja' import ejabberd with context %}
include:
  - {{ tplroot }}.users
{%- if ejabberd.is_seed and ejabberd.muc.enabled %}
{%-   set api = ejabberd.api_client %}
{%-   set service = ejabberd.muc.host | replace('@HOST@', ejabberd.domain) %}
{%-   for name, room in ejabberd.muc.rooms | dictsort %}
{%-     set jid = name ~ '@' ~ service %}
{%-     set which = {'name': name, 'service': service} | json %}
{%-     set affiliations = "echo '" ~ which ~ "' | " ~ api ~ " get_room_affiliations" ~ ejabberd.api_v1 %}
{%-     set options = [
          {'name': 'title', 'value': room.get('title', name)},
          {'name': 'persistent', 'value': 'true'},
          {'name': 'members_only', 'value': 'true'},
          {'name': 'public', 'value': 'false'},
          {'name': 'mam', 'value': ejabberd.muc.archive | string | lower}] %}
{%-     set create = {'name': name, 'service': service, 'host': ejabberd.domain,
                      'options': options} | json %}

ejabberd-room-{{ jid }}-created:
  cmd.run:
    - name: {{ api }} create_room_with_opts{{ ejabberd.api_v1 }} >/dev/null
    - stdin: {{ (create ~ '\n') | json }}
    - unless: {{ (affiliations ~ ' >/dev/null') | json }}
    - require:
      - cmd: ejabberd-service-node-started
{%-     for user in room.get('members', []) %}
{%-       set member = user ~ '@' ~ ejabberd.domain %}
{%-       set is_member = affiliations ~ " | python3 -c 'import json, sys; sys.exit(not any("
                          ~ "a.get(\"username\") == \"" ~ user ~ "\" and a.get(\"domain\") == \""
                          ~ ejabberd.domain ~ "\" and a.get(\"affiliation\") == \"member\""
                          ~ " for a in json.load(sys.stdin)))'" %}
{%-       set affiliate = {'name': name, 'service': service, 'jid': member,
                           'affiliation': 'member'} | json %}

ejabberd-room-{{ jid }}-member-{{ member }}:
  cmd.run:
    - name: {{ api }} set_room_affiliation{{ ejabberd.api_v1 }} >/dev/null
    - stdin: {{ (affiliate ~ '\n') | json }}
    - unless: {{ is_member | json }}
    - require:
      - cmd: ejabberd-room-{{ jid }}-created
      - cmd: ejabberd-user-{{ member }}-registered
{%-       set item = "<item id='" ~ jid ~ "'><conference xmlns='urn:xmpp:bookmarks:1' name='"
                     ~ (room.get('title', name) | e) ~ "' autojoin='false'><nick>" ~ user
                     ~ "</nick></conference></item>" %}
{%-       set stanza = "<iq xmlns='jabber:client' type='set' id='salt-bookmark'>"
                       ~ "<pubsub xmlns='http://jabber.org/protocol/pubsub'>"
                       ~ "<publish node='urn:xmpp:bookmarks:1'>" ~ item ~ "</publish>"
                       ~ "<publish-options><x xmlns='jabber:x:data' type='submit'>"
                       ~ "<field var='FORM_TYPE' type='hidden'><value>"
                       ~ "http://jabber.org/protocol/pubsub#publish-options</value></field>"
                       ~ "<field var='pubsub#persist_items'><value>true</value></field>"
                       ~ "<field var='pubsub#access_model'><value>whitelist</value></field>"
                       ~ "</x></publish-options></pubsub></iq>" %}
{%-       set publish = {'from': member, 'to': member, 'stanza': stanza} | json %}
{%-       set marker = ejabberd.marker_dir ~ '/bookmark-' ~ member ~ '-' ~ jid %}
{%-       set digest = salt['hashutil.sha256_digest'](stanza) %}

ejabberd-room-{{ jid }}-bookmarked-for-{{ member }}:
  cmd.run:
    - name: >-
        read -r publish; printf '%s' "$publish" | {{ api }} send_stanza{{ ejabberd.api_v1 }} >/dev/null &&
        echo {{ digest }} > {{ marker }}
    - stdin: {{ (publish ~ '\n') | json }}
    - unless: {{ ('grep -qx ' ~ digest ~ ' ' ~ marker) | json }}
    - require:
      - cmd: ejabberd-room-{{ jid }}-member-{{ member }}
      - file: ejabberd-users-marker-directory-present
{%-     endfor %}
{%-   endfor %}
{%- endif %}
