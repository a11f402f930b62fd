"""`keyrite report`: a ceremony's printable report, from its verified journal alone.

`facts.facts_of(records)` reads the journal's records into what the report states (pure);
`pdf.report_pdf(facts)` lays that out for print (reportlab); `report_command` is the command.
See docs/report.md.
"""
