"""The echomeasure review UI: a Gradio app over the library (``demo.app``) and its caliper viewer."""
