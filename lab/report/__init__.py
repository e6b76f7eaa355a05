"""`pooler-lab report`: the rows of a run, turned into results/report.md, report.html and plots.

Everything in the report is computed from result rows; nothing is typed in. Each
section names the rows it rests on (run id and cell ids) and the versions that
produced them.
"""
