# First (seed) node of the cluster: users are registered here once.
ejabberd:
  node: ejabberd@ejabberd1
