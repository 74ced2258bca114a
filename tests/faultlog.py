"Record fault-injection and hostile-input outcomes for the reliability table (tools/faults_table.py)."
import json, os, time


def record(kind: str, case: str, outcome: str, nothing_lost: bool, seconds: float | None = None):
    "Append one case to the JSON-lines file named by MEDSYN_FAULTS_LOG (nothing when it is unset)."
    path = os.environ.get("MEDSYN_FAULTS_LOG")
    if not path: return
    row = dict(kind=kind, case=case, outcome=outcome, nothing_lost=bool(nothing_lost), seconds=seconds, time=time.strftime("%Y-%m-%dT%H:%M:%S"))
    with open(path, "a") as f: f.write(json.dumps(row) + "\n")
