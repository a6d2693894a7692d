"""Pictures and pages from tidy tables: figures (plots.py, steer_plots.py) and the HTML report (html.py)."""
