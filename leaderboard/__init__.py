"""The reference leaderboard entries, installed with fmbench as the package ``fmbench_leaderboard``
so that ``fmbench leaderboard``, ``compare`` and ``analyze`` work from any folder (this folder's
``*.json`` and ``baselines/*.json``; ``reproduce.py`` and ``runs/`` are the campaign's own)."""
