"""Frame-by-frame inference, decoding, temporal smoothing, ED/ES selection, Doppler peaks.

``from echomeasure.propose import propose`` is the entry point; torch is imported only when a
model actually runs.
"""

from echomeasure.propose.engine import clear_engines, parse_only, propose, to_contract_json
from echomeasure.propose.types import ClipProposals, ModelInfo, Proposal

__all__ = ["ClipProposals", "ModelInfo", "Proposal", "clear_engines", "parse_only", "propose", "to_contract_json"]
