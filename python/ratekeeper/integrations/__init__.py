"""Adapters that put a ratekeeper limiter under other frameworks.

Each lives in its own module and imports its framework only when imported
itself: ``ratekeeper.integrations.langchain`` needs ``langchain-core``
(``pip install ratekeeper[langchain]``).

>>> import ratekeeper.integrations
"""
