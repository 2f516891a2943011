"""Data in: download and extraction, audio files, the procedural kit, STFT features, normalization stats."""
