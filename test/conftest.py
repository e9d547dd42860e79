"""Makes the helpers shared across test directories (``stereo_rig.py``, ``motion_scene.py``)
importable from all of them: pytest puts the directory of every conftest.py on sys.path."""
