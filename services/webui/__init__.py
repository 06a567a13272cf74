"""Gradio web chat: talks to the controller and the model workers only over their HTTP APIs.

Gradio reads ``GRADIO_ANALYTICS_ENABLED`` when it is imported; switching analytics off here, before
any submodule imports gradio, keeps the UI from calling home (the user may still opt in).
"""

import os

os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")
