"""A local stand-in for the Hugging Face Hub's HTTP API, for the `memzinc hub push/pull` tests.

No real Hub is reachable from the test machines, so this implements the endpoints
`huggingface_hub` uses, with their request and response shapes, in memory:

  POST /api/repos/create                                 {"type","name","organization"} -> 200, 409 if it exists
  POST /api/datasets/{repo}/preupload/{rev}              {"files":[{"path","size","sample"}]}
                                                         -> {"files":[{"path","uploadMode":"lfs"|"regular"}]}
  POST /datasets/{repo}.git/info/lfs/objects/batch       Git LFS batch API, "basic" transfer:
                                                         upload + verify actions for objects not stored yet
  PUT  {upload href}                                     the object's bytes (sha256 must equal the oid)
  POST {verify href}                                     {"oid","size"}
  POST /api/datasets/{repo}/commit/{rev}                 NDJSON: header, file (base64), lfsFile (stored oid)
                                                         -> {"commitOid","commitUrl"}
  GET  /api/datasets/{repo}/revision/{rev}               {"id","sha","siblings":[{"rfilename"}]}
  GET  /datasets/{repo}/resolve/{rev}/{path}             the file; LFS files carry X-Linked-Etag: sha256

Every API request needs `Authorization: Bearer TOKEN` (401 otherwise); LFS transfers need the
header the batch response handed out. `GET /_log` lists the requests seen (for the tests).
Prints `PORT n` once listening. Usage: hub_server.py TOKEN
"""

import base64
import hashlib
import json
import re
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

TOKEN = sys.argv[1]
LFS_AUTH = "Basic " + base64.b64encode(b"lfs:" + TOKEN.encode()).decode()
LOCK = threading.Lock()
REPOS = {}  # repo -> {"commits": [sha], "files": {path: (bytes, lfs_oid or None)}}
OBJECTS = {}  # oid -> bytes
LOG = []

REPO = r"(?P<repo>[\w.-]+/[\w.-]+)"


class Hub(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, *args):
        pass

    def reply(self, status, body=b"", content_type="application/json", headers=()):
        if isinstance(body, (dict, list)):
            body = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        for k, v in headers:
            self.send_header(k, v)
        self.end_headers()
        self.wfile.write(body)

    def error(self, status, message):
        self.reply(status, {"error": message})

    def body(self):
        return self.rfile.read(int(self.headers.get("Content-Length") or 0))

    def authorized(self, expected):
        # Exactly the expected credential: the Hub token must not travel to LFS storage.
        if self.headers.get_all("Authorization") == [expected]:
            return True
        self.error(401, "Invalid credentials in Authorization header")
        return False

    def route(self, method):
        LOG.append(f"{method} {self.path}")
        path = self.path.split("?")[0]
        base = f"http://{self.headers['Host']}"
        if method == "GET" and path == "/_log":
            return self.reply(200, LOG)
        if m := re.fullmatch(r"/lfs/(?P<oid>[0-9a-f]{64})", path):
            if not self.authorized(LFS_AUTH):
                return
            data = self.body()
            if method == "PUT":
                if hashlib.sha256(data).hexdigest() != m["oid"]:
                    return self.error(400, "content does not match the oid")
                OBJECTS[m["oid"]] = data
                return self.reply(200)
            request = json.loads(data)
            stored = OBJECTS.get(m["oid"])
            if stored is None or len(stored) != request["size"]:
                return self.error(404, "object not uploaded")
            return self.reply(200, {})
        if not self.authorized(f"Bearer {TOKEN}"):
            return
        if method == "POST" and path == "/api/repos/create":
            request = json.loads(self.body())
            if request.get("type") != "dataset":
                return self.error(400, "only dataset repositories here")
            repo = f"{request['organization']}/{request['name']}"
            with LOCK:
                if repo in REPOS:
                    return self.error(409, "You already created this dataset repo")
                REPOS[repo] = {"commits": [], "files": {}}
            return self.reply(200, {"url": f"{base}/datasets/{repo}"})
        if m := re.fullmatch(rf"/api/datasets/{REPO}/preupload/(?P<rev>[\w.-]+)", path):
            if m["repo"] not in REPOS:
                return self.error(404, "Repository not found")
            files = json.loads(self.body())["files"]
            for f in files:
                base64.b64decode(f["sample"], validate=True)
            modes = [{"path": f["path"], "uploadMode": "regular" if f["path"].endswith(".md") else "lfs",
                      "shouldIgnore": False} for f in files]
            return self.reply(200, {"files": modes})
        if m := re.fullmatch(rf"/datasets/{REPO}\.git/info/lfs/objects/batch", path):
            if self.headers.get("Accept") != "application/vnd.git-lfs+json":
                return self.error(406, "Accept must be application/vnd.git-lfs+json")
            request = json.loads(self.body())
            if request["operation"] != "upload" or "basic" not in request.get("transfers", ["basic"]):
                return self.error(422, "basic upload only")
            objects = []
            for o in request["objects"]:
                entry = {"oid": o["oid"], "size": o["size"], "authenticated": True}
                if o["oid"] not in OBJECTS:
                    action = {"href": f"{base}/lfs/{o['oid']}", "header": {"Authorization": LFS_AUTH}}
                    entry["actions"] = {"upload": action, "verify": action}
                objects.append(entry)
            return self.reply(200, {"transfer": "basic", "objects": objects},
                              content_type="application/vnd.git-lfs+json")
        if m := re.fullmatch(rf"/api/datasets/{REPO}/commit/(?P<rev>[\w.-]+)", path):
            repo = REPOS.get(m["repo"])
            if repo is None:
                return self.error(404, "Repository not found")
            if self.headers.get("Content-Type") != "application/x-ndjson":
                return self.error(400, "expected application/x-ndjson")
            lines = [json.loads(line) for line in self.body().decode().splitlines() if line.strip()]
            if not lines or lines[0]["key"] != "header" or not lines[0]["value"].get("summary"):
                return self.error(400, "the first line must be the header with a summary")
            files = dict(repo["files"])
            for line in lines[1:]:
                v = line["value"]
                if line["key"] == "file":
                    if v.get("encoding") != "base64":
                        return self.error(400, "file content must be base64")
                    files[v["path"]] = (base64.b64decode(v["content"], validate=True), None)
                elif line["key"] == "lfsFile":
                    data = OBJECTS.get(v["oid"])
                    if v.get("algo") != "sha256" or data is None:
                        return self.error(400, f"LFS object {v['oid']} was not uploaded")
                    files[v["path"]] = (data, v["oid"])
                else:
                    return self.error(400, f"unknown key {line['key']}")
            sha = hashlib.sha1(json.dumps(sorted((p, hashlib.sha256(d).hexdigest()) for p, (d, _) in files.items())
                                          + [len(repo["commits"])]).encode()).hexdigest()
            with LOCK:
                repo["files"] = files
                repo["commits"].append(sha)
            return self.reply(200, {"commitOid": sha, "commitUrl": f"{base}/datasets/{m['repo']}/commit/{sha}"})
        if m := re.fullmatch(rf"/api/datasets/{REPO}/revision/(?P<rev>[\w.-]+)", path):
            repo = REPOS.get(m["repo"])
            if repo is None or not repo["commits"]:
                return self.error(404, "Revision Not Found")
            return self.reply(200, {"id": m["repo"], "sha": repo["commits"][-1],
                                    "siblings": [{"rfilename": p} for p in sorted(repo["files"])]})
        if m := re.fullmatch(rf"/datasets/{REPO}/resolve/(?P<rev>[\w.-]+)/(?P<file>.+)", path):
            repo = REPOS.get(m["repo"])
            if repo is None or m["file"] not in repo["files"]:
                return self.error(404, "Entry not found")
            data, oid = repo["files"][m["file"]]
            headers = [("X-Repo-Commit", repo["commits"][-1])]
            if oid:
                headers.append(("X-Linked-Etag", f'"{oid}"'))
            return self.reply(200, data, content_type="application/octet-stream", headers=headers)
        return self.error(404, f"no route {method} {path}")

    def do_GET(self):
        self.route("GET")

    def do_POST(self):
        self.route("POST")

    def do_PUT(self):
        self.route("PUT")


server = ThreadingHTTPServer(("127.0.0.1", 0), Hub)
print(f"PORT {server.server_address[1]}", flush=True)
server.serve_forever()
