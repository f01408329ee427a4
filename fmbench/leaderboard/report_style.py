"""The CSS the report and the leaderboard page share."""

STYLE = """body{font:14px/1.45 system-ui,sans-serif;max-width:1200px;margin:2em auto;padding:0 1em;color:#222}
h1{font-size:1.5em}h2{font-size:1.15em;margin-top:1.6em;border-bottom:1px solid #ddd}
table{border-collapse:collapse;margin:.5em 0}td,th{padding:.25em .7em;border-bottom:1px solid #eee;text-align:right}
td:first-child,th:first-child{text-align:left}.flag{color:#b00;font-weight:600}.dim{color:#777}
img{max-width:100%}.note{color:#555;font-size:.92em}
table.board td:nth-child(2),table.board th:nth-child(2),table.board td:last-child{text-align:left}"""

# in every page fmbench writes: a folder holding one is fmbench's to rewrite
GENERATOR = "<meta name=generator content=fmbench>"
