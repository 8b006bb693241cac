"""Understanding what callers say: recognized text → intent, with rejection.

`embeddings` holds static word embeddings (wordllama's weights, shipped in its wheel);
`classifier` matches an utterance against a grammar's example phrases by meaning and by
phrase spotting, and rejects what belongs to no intent; `numbers` turns spoken or written
numbers ("four one two", "4, 1, 2.", "double four") into digits and words.
"""
