{#- Rooms from pillar (prosody:muc:rooms), created and kept through the running
    server's admin shell (prosodyctl shell, mod_admin_shell): persistent, members-only,
    hidden, archived as muc:archive says; each member affiliated, and given a XEP-0402
    bookmark of the room in its PEP service. Reads decide what to do, so a re-apply
    changes nothing.
    - muc:create does not store the room; set_affiliation does (and save(true) for a
      room without members), so the room survives a restart.
    - A shell command exits non-zero when it answers with an error ("No such room"). #}
{%- set tplroot = tpldir.split('/')[0] %}
{%- from tplroot ~ '/map.jinja' import prosody with context %}
include:
  - {{ tplroot }}.users
{%- macro shell(lua) -%}
prosodyctl shell '{{ lua | replace("'", "'\\''") }}'
{%- endmacro %}
{%- if prosody.muc.enabled %}
{%-   set service = prosody.muc.host or 'conference.' ~ prosody.domain %}
{%-   for name, room in prosody.muc.rooms | dictsort %}
{%-     set jid = name ~ '@' ~ service %}
{%-     set title = room.get('title', name) %}
{%-     set config = '{ persistent = true; members_only = true; hidden = true; archiving = '
                     ~ (prosody.muc.archive | string | lower) ~ '; name = ' ~ (title | json) ~ ' }' %}

prosody-room-{{ jid }}-created:
  cmd.run:
    - name: {{ (shell('muc:create("' ~ jid ~ '", ' ~ config ~ ')') ~ ' && '
                ~ shell('muc:room("' ~ jid ~ '").room:save(true)')) | json }}
    - unless: {{ shell('muc:room("' ~ jid ~ '")') | json }}
    - require:
      - service: prosody-service-running
{%-     for user in room.get('members', []) %}
{%-       set member = user ~ '@' ~ prosody.domain %}

prosody-room-{{ jid }}-member-{{ member }}:
  cmd.run:
    - name: {{ shell('muc:room("' ~ jid ~ '").room:set_affiliation(true, "' ~ member ~ '", "member")') | json }}
    - unless: {{ (shell('muc:room("' ~ jid ~ '").room:get_affiliation("' ~ member ~ '")')
                  ~ " | grep -qx '[A-Za-z]*: member'") | json }}
    - require:
      - cmd: prosody-room-{{ jid }}-created
      - cmd: prosody-user-{{ member }}-registered
{%-       set pep = 'prosody.hosts["' ~ prosody.domain ~ '"].modules.pep.get_pep_service("' ~ user ~ '")' %}
{%-       set publish = '>local st = require "util.stanza"; '
                        ~ 'local item = st.stanza("item", { xmlns = "http://jabber.org/protocol/pubsub"; id = "' ~ jid ~ '" })'
                        ~ ':tag("conference", { xmlns = "urn:xmpp:bookmarks:1"; name = ' ~ (title | json) ~ '; autojoin = "false" })'
                        ~ ':text_tag("nick", "' ~ user ~ '"); '
                        ~ 'return assert(' ~ pep ~ ':publish("urn:xmpp:bookmarks:1", true, "' ~ jid ~ '", item, '
                        ~ '{ persist_items = true; max_items = "max"; access_model = "whitelist"; send_last_published_item = "never" }))' %}
{%-       set has = '>local ok, items = ' ~ pep ~ ':get_items("urn:xmpp:bookmarks:1", true, "' ~ jid ~ '"); '
                    ~ 'assert(ok and items and items["' ~ jid ~ '"], "no bookmark")' %}

prosody-room-{{ jid }}-bookmarked-for-{{ member }}:
  cmd.run:
    - name: {{ shell(publish) | json }}
    - unless: {{ shell(has) | json }}
    - require:
      - cmd: prosody-room-{{ jid }}-member-{{ member }}
{%-     endfor %}
{%-   endfor %}
{%- endif %}
