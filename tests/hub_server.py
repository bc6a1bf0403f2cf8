"""A local stand-in for the Hugging Face Hub's HTTP API, for the `memzinc hub push/pull` tests.

No real Hub is reachable from the test machines, so this implements the endpoints
`huggingface_hub` uses, with their request and response shapes, in memory:

  POST /api/repos/create                                 {"type","name","organization"} -> 200, 409 if it exists
  POST /api/validate-yaml                                {"content","repoType"} -> {"errors","warnings"}
  POST /api/datasets/{repo}/preupload/{rev}              {"files":[{"path","size","sample"}]}
                                                         -> {"files":[{"path","uploadMode":"lfs"|"regular"}]}
  POST /datasets/{repo}.git/info/lfs/objects/batch       Git LFS batch API: upload + verify actions for
                                                         objects not stored yet; "multipart" (if the client
                                                         offers it) for objects of MULTIPART_FROM bytes and more
  PUT  {upload href}                                     basic: the object's bytes (sha256 must equal the oid)
  PUT  {part URL}                                        multipart: part n of the object; replies with its ETag
                                                         (upload and part URLs are signed storage URLs: an
                                                         Authorization header is refused)
  POST {completion href}                                 multipart: {"oid","parts":[{"partNumber","etag"}]}
  POST {verify href}                                     {"oid","size"}; the action's header or the Hub token
  POST /api/datasets/{repo}/commit/{rev}                 NDJSON: header, file (base64), lfsFile (stored oid)
                                                         -> {"commitOid","commitUrl"}
  GET  /api/datasets/{repo}/revision/{rev}               {"id","sha","siblings":[{"rfilename"}]}
  GET  /datasets/{repo}/resolve/{rev}/{path}             the file; LFS files carry X-Linked-Etag: sha256

Every API request needs `Authorization: Bearer TOKEN` (401 otherwise). `huggingface_hub`'s own
client works against it too (the interop test pushes with it), so the stand-in speaks what the
reference client expects: storage URLs take no credentials, verify takes the Hub token. For the
tests: `GET /_log` lists the requests seen, `POST /_tamper/{repo}/{path}` flips a byte of a
stored file. Prints `PORT n` once listening. Usage: hub_server.py TOKEN
"""

import base64
import hashlib
import json
import re
import sys
import threading

import yaml
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

TOKEN = sys.argv[1]
LFS_AUTH = "Basic " + base64.b64encode(b"lfs:" + TOKEN.encode()).decode()
LOCK = threading.Lock()
REPOS = {}  # repo -> {"commits": [sha], "files": {path: (bytes, lfs_oid or None)}}
OBJECTS = {}  # oid -> bytes
PARTS = {}  # (oid, part number) -> bytes
LOG = []
# Small, so that a test's tables go both ways (the Hub's own threshold is larger).
MULTIPART_FROM = 256 << 10
PART_SIZE = 96 << 10

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
        if m := re.fullmatch(rf"/_tamper/{REPO}/(?P<file>.+)", path):
            # For the tests: flip a byte of a stored file, keep its oid (a corrupted download).
            data, oid = REPOS[m["repo"]]["files"][m["file"]]
            REPOS[m["repo"]]["files"][m["file"]] = (bytes([data[0] ^ 1]) + data[1:], oid)
            return self.reply(200, {})
        if m := re.fullmatch(r"/lfs-part/(?P<oid>[0-9a-f]{64})/(?P<n>[0-9]+)", path):
            if method != "PUT" or self.headers.get("Authorization") is not None:
                return self.error(400, "a signed part URL takes a PUT and no Authorization header")
            data = self.body()
            PARTS[(m["oid"], int(m["n"]))] = data
            return self.reply(200, headers=[("ETag", f'"{hashlib.md5(data).hexdigest()}"')])
        if m := re.fullmatch(r"/lfs/(?P<oid>[0-9a-f]{64})/complete", path):
            if self.headers.get("Content-Type") != "application/vnd.git-lfs+json":
                return self.error(400, "Content-Type must be application/vnd.git-lfs+json")
            request = json.loads(self.body())
            if request.get("oid") != m["oid"]:
                return self.error(400, "oid does not match the upload")
            data = b""
            for i, part in enumerate(request["parts"]):
                stored = PARTS.get((m["oid"], part["partNumber"]))
                if part["partNumber"] != i + 1 or stored is None:
                    return self.error(400, f"part {i + 1} missing")
                if part["etag"] != f'"{hashlib.md5(stored).hexdigest()}"':
                    return self.error(400, f"part {i + 1}: wrong ETag")
                data += stored
            if hashlib.sha256(data).hexdigest() != m["oid"]:
                return self.error(400, "content does not match the oid")
            OBJECTS[m["oid"]] = data
            return self.reply(200, {})
        if m := re.fullmatch(r"/lfs/(?P<oid>[0-9a-f]{64})", path):
            # Basic upload: a signed storage URL, so the Hub token must not come along.
            if method != "PUT" or self.headers.get("Authorization") is not None:
                return self.error(400, "a signed upload URL takes a PUT and no Authorization header")
            data = self.body()
            if hashlib.sha256(data).hexdigest() != m["oid"]:
                return self.error(400, "content does not match the oid")
            OBJECTS[m["oid"]] = data
            return self.reply(200)
        if m := re.fullmatch(r"/lfs/(?P<oid>[0-9a-f]{64})/verify", path):
            # The Hub's verify endpoint: the batch's LFS credential (git-lfs sends the action's
            # header) or the Hub token (huggingface_hub sends that instead).
            if self.headers.get_all("Authorization") not in ([LFS_AUTH], [f"Bearer {TOKEN}"]):
                return self.error(401, "Invalid credentials in Authorization header")
            request = json.loads(self.body())
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
        if method == "POST" and path == "/api/validate-yaml":
            # The card's YAML front matter must parse (huggingface_hub asks before a commit).
            content = json.loads(self.body())["content"]
            front = re.match(r"---\n(.*?)\n---\n", content, re.S)
            if front is None:
                return self.reply(200, {"errors": [], "warnings": [{"message": "empty or missing yaml metadata"}]})
            try:
                yaml.safe_load(front[1])
            except yaml.YAMLError as e:
                return self.reply(400, {"errors": [{"message": str(e)}], "warnings": []})
            return self.reply(200, {"errors": [], "warnings": []})
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
            multipart = "multipart" in request.get("transfers", [])
            objects = []
            for o in request["objects"]:
                entry = {"oid": o["oid"], "size": o["size"], "authenticated": True}
                if o["oid"] not in OBJECTS:
                    verify = {"href": f"{base}/lfs/{o['oid']}/verify", "header": {"Authorization": LFS_AUTH}}
                    upload = {"href": f"{base}/lfs/{o['oid']}?X-Amz-Signature=test"}
                    if multipart and o["size"] >= MULTIPART_FROM:
                        parts = -(-o["size"] // PART_SIZE)
                        header = {"chunk_size": str(PART_SIZE)}
                        for n in range(1, parts + 1):
                            header[str(n)] = f"{base}/lfs-part/{o['oid']}/{n}?X-Amz-Signature=test"
                        upload = {"href": f"{base}/lfs/{o['oid']}/complete", "header": header}
                    entry["actions"] = {"upload": upload, "verify": verify}
                objects.append(entry)
            return self.reply(200, {"transfer": "multipart" if multipart else "basic", "objects": objects},
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
