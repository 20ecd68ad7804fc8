{#- One package-list refresh per machine instead of one per formula; skipped when
    the lists are younger than a day, or when pillar lab:pkg_refresh is false
    (the nspawn harness pre-stages packages). #}
{%- if salt['pillar.get']('lab:pkg_refresh', True) %}
lab-apt-package-lists-refreshed:
  cmd.run:
    - name: apt-get update -qq
    - unless: find /var/lib/apt/lists -maxdepth 1 -name '*_Packages*' -mmin -1440 | grep -q .
{%- else %}
lab-apt-package-lists-refresh-disabled-by-pillar:
  test.nop
{%- endif %}
