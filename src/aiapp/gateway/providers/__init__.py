"""Model providers: ``local`` (offline baseline), ``openai_compat`` (fast path) and ``litellm``.

Each provider module is imported only when a deployment needs it.
"""
