"""The live call: playback pacing, the per-call pipeline and the registry of calls."""
