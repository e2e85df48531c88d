"""echomeasure: AI-assisted echocardiography measurement with human review.

Data flow (one module owns each stage)::

    file -> ingest (read, de-identify, gate, calibrate)   => DeidentifiedClip
         -> propose (models frame by frame, decode, ED/ES) => ClipProposals
         -> store (clips, proposals, reviews, audit)
         -> review UI / export / fine-tune
"""

__version__ = "0.1.0"
