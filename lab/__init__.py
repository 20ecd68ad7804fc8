"""Lab tooling: the manifest reader (lab.manifest), the secrets generator, the nspawn
harness, the throwaway servers.  A package of the checkout, never installed: run it
from the top directory (``python -m lab.harness``)."""
