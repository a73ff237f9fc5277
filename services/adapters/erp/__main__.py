"""`python -m services.adapters.erp`: serve the ERP adapter until SIGTERM/SIGINT (with the
SAP simulator beside it unless MARQUE_ERP_ADAPTER_SAP_URL names a SAP)."""

import os

from mesh.server import run
from services.adapters.erp.app import build_spec
from services.adapters.erp.local import simulator_for

with simulator_for(os.environ):
    run(build_spec())
