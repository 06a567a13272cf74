"""Run with FastChat 0.2.36's python: what FastChat's own code does with conversation templates.

Reads ``{"convs": [conv objects], "chats": [[OpenAI messages]]}`` as JSON on stdin and writes
to the file named by its argument (FastChat turns stdout into a log)
``{"registered": {name: {"conv": ..., "prompts": [...]}}, "given": [[prompts]]}``:
- ``registered``: every template FastChat registers, as its worker answers
  ``/worker_get_conv_template`` (FastAPI's encoding of the dataclass), with the prompt FastChat's
  openai_api_server builds for each chat (None when FastChat's code raises);
- ``given``: the prompts FastChat's openai_api_server builds from the given conv objects.
The prompt building is ``fastchat.serve.openai_api_server.get_gen_params``, called for real with
the conv object in place of the worker's answer.
"""

import asyncio
import json
import sys

from fastapi.encoders import jsonable_encoder
from fastchat.conversation import conv_templates
from fastchat.serve import openai_api_server


def prompt_of(conv: dict, messages: list) -> str | None:
    async def fake_get_conv(model_name, worker_addr):
        return conv

    openai_api_server.get_conv = fake_get_conv
    params = dict(temperature=0, top_p=1, top_k=-1, presence_penalty=0, frequency_penalty=0)
    params |= dict(max_tokens=8, echo=False, stop=None)
    try:
        gen = asyncio.run(openai_api_server.get_gen_params("m", "w", messages, **params))
    except Exception:  # some FastChat templates fail on some chats (steerlm)
        return None
    return gen["prompt"]


def main() -> None:
    given = json.load(sys.stdin)
    registered = {}
    for name, template in conv_templates.items():
        conv = jsonable_encoder(template)
        prompts = [prompt_of(conv, chat) for chat in given["chats"]]
        registered[name] = {"conv": conv, "prompts": prompts}
    ours = [[prompt_of(conv, chat) for chat in given["chats"]] for conv in given["convs"]]
    with open(sys.argv[1], "w") as out:
        json.dump({"registered": registered, "given": ours}, out)


if __name__ == "__main__":
    main()
