"""The pretraining methods, by name: CL-MAE (learned curriculum masks) and the MAE baseline. No torch here: the
command line's choices read them."""

METHODS = ("clmae", "mae")
METHOD_TITLES = {"clmae": "CL-MAE", "mae": "MAE"}
