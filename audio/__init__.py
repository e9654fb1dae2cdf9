"""Loa's audio layer: Vietnamese text normalisation, text-to-speech, rendering and storage.

It knows nothing of the server: it takes text and files and returns audio and facts about it.
"""
