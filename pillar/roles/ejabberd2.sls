# Second node: joins ejabberd@ejabberd1 (the first of lab:cluster:ejabberd).
ejabberd:
  node: ejabberd@ejabberd2
