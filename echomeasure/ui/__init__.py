"""The echomeasure review UI: a Gradio app over the library (``echomeasure.ui.app``) and its caliper viewer."""
