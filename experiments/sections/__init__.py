"""Each experiment's report section and figures: prose and drawing, read from results files and
never part of a cell's key (see :mod:`..codekey`)."""
