//! Hugging Face datasets: the dataset card of a table directory in the hub layout, and the
//! Hub's HTTP API as `huggingface_hub` speaks it — create the repository, `preupload` (which
//! files go by LFS), the Git LFS batch API for those ("basic" or, where the Hub asks,
//! "multipart"; files streamed from disk), one `commit` (NDJSON) for all; `revision` (the file
//! list) and `resolve` (the files) to pull.

use std::io::Read as _;
use std::path::{Path, PathBuf};

use base64::Engine as _;
use serde::Serialize;
use serde_json::{json, Value};
use sha2::Digest as _;

use memzinc::base::{Error, Result};

use super::export::ExportReport;
use super::table_defs as tables;

/// Writes `README.md` (the dataset card) for the tables `report` lists: YAML `configs`, one
/// per non-empty table, each reading `data/<table>/*.parquet` (`datasets` refuses a split
/// with no rows; empty tables stay in `data/` for Parquet readers); then what a row of each
/// table is.
pub fn write_card(dir: &Path, report: &ExportReport) -> Result<()> {
    let mut card = String::from("---\nconfigs:\n");
    for (name, _) in report.tables.iter().filter(|(_, rows)| *rows > 0) {
        card.push_str(&format!(
            "- config_name: {name}\n  data_files:\n  - split: train\n    path: data/{name}/*.parquet\n"
        ));
    }
    card.push_str("tags:\n- memzinc\n- core-dump\n---\n\n");
    card.push_str(&format!(
        "# memzinc snapshot {}\n\nThe tables of one memzinc snapshot (an ELF core of a live process). \
         `memzinc import DIR -o app.core` rebuilds the core, byte for byte, from the regions, pages \
         and notes tables.\n\n| table | rows | a row is |\n|---|---|---|\n",
        report.root
    ));
    for (name, rows) in &report.tables {
        let about = tables::ALL
            .iter()
            .find(|t| t.name == name)
            .map(|t| t.row_is)
            .unwrap_or("");
        let empty = if *rows == 0 { " (empty: no config)" } else { "" };
        card.push_str(&format!("| `{name}` | {rows}{empty} | {about} |\n"));
    }
    memzinc::base::write_file_atomically(&dir.join("README.md"), card.as_bytes())
}

/// A client of a Hub at `endpoint`.
pub struct Hub {
    endpoint: String,
    token: Option<String>,
    http: reqwest::blocking::Client,
}

#[derive(Debug, Serialize)]
pub struct PushReport {
    pub files: usize,
    pub lfs_files: usize,
    pub commit: String,
}

#[derive(Debug, Serialize)]
pub struct PullReport {
    pub files: usize,
    pub bytes: u64,
    pub commit: String,
}

/// A file the Hub takes by LFS.
struct LfsFile<'a> {
    rel: &'a str,
    path: &'a Path,
    size: u64,
    /// Hex SHA-256 of the contents.
    oid: String,
}

impl LfsFile<'_> {
    /// `len` bytes from `start`, read as the request goes out.
    fn part(&self, start: u64, len: u64) -> Result<reqwest::blocking::Body> {
        use std::io::Seek as _;
        let mut file = std::fs::File::open(self.path).map_err(|e| Error::io(self.path, e))?;
        file.seek(std::io::SeekFrom::Start(start))
            .map_err(|e| Error::io(self.path, e))?;
        Ok(reqwest::blocking::Body::sized(file.take(len), len))
    }
}

/// A request with the headers an LFS batch action hands out for it.
fn with_action_headers(
    mut req: reqwest::blocking::RequestBuilder,
    action: &Value,
) -> reqwest::blocking::RequestBuilder {
    for (k, v) in action["header"].as_object().into_iter().flatten() {
        req = req.header(k, v.as_str().unwrap_or_default());
    }
    req
}

/// A request with the Git LFS media type for both ways.
fn lfs_json(req: reqwest::blocking::RequestBuilder) -> reqwest::blocking::RequestBuilder {
    req.header("Accept", "application/vnd.git-lfs+json")
        .header("Content-Type", "application/vnd.git-lfs+json")
}

/// Hex SHA-256 of a file, read in pieces.
fn sha256_of(path: &Path) -> Result<String> {
    let mut file = std::fs::File::open(path).map_err(|e| Error::io(path, e))?;
    let mut hasher = sha2::Sha256::new();
    let mut buf = vec![0u8; 1 << 20];
    loop {
        let n = file.read(&mut buf).map_err(|e| Error::io(path, e))?;
        if n == 0 {
            return Ok(hex::encode(hasher.finalize()));
        }
        hasher.update(&buf[..n]);
    }
}

/// Every file under `dir` as (path in the repository, file), hidden files left out.
fn repo_files(dir: &Path) -> Result<Vec<(String, PathBuf)>> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for entry in std::fs::read_dir(&d).map_err(|e| Error::io(&d, e))? {
            let path = entry.map_err(|e| Error::io(&d, e))?.path();
            if path.file_name().is_some_and(|n| n.to_string_lossy().starts_with('.')) {
                continue;
            }
            if path.is_dir() {
                stack.push(path);
            } else if let Ok(rel) = path.strip_prefix(dir) {
                let rel = rel
                    .components()
                    .map(|c| c.as_os_str().to_string_lossy().into_owned())
                    .collect::<Vec<_>>()
                    .join("/");
                out.push((rel, path));
            }
        }
    }
    out.sort();
    Ok(out)
}

/// A path from the server that stays inside the directory it is written into.
fn safe_relative(path: &str) -> bool {
    !path.is_empty()
        && !path.starts_with('/')
        && path
            .split('/')
            .all(|part| !part.is_empty() && part != "." && part != "..")
}

impl Hub {
    pub fn new(endpoint: &str, token: Option<String>) -> Result<Hub> {
        let http = reqwest::blocking::Client::builder()
            .user_agent(concat!("memzinc/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|e| Error::Hub {
                url: endpoint.into(),
                why: e.to_string(),
            })?;
        Ok(Hub {
            endpoint: endpoint.trim_end_matches('/').to_string(),
            token,
            http,
        })
    }

    fn err(url: &str, why: impl std::fmt::Display) -> Error {
        Error::Hub {
            url: url.into(),
            why: why.to_string(),
        }
    }

    fn authed(&self, req: reqwest::blocking::RequestBuilder) -> reqwest::blocking::RequestBuilder {
        match &self.token {
            Some(t) => req.bearer_auth(t),
            None => req,
        }
    }

    /// Sends `req` to the Hub with the token; a status other than 2xx (or `also_ok`) is an
    /// error with the server's message.
    fn send(
        &self,
        url: &str,
        req: reqwest::blocking::RequestBuilder,
        also_ok: &[u16],
    ) -> Result<reqwest::blocking::Response> {
        self.send_as_is(url, self.authed(req), also_ok)
    }

    /// Sends `req` without adding the token: LFS transfers go where the batch response says
    /// (storage URLs that authorise by the headers it gave), and the Hub token stays with the Hub.
    fn send_as_is(
        &self,
        url: &str,
        req: reqwest::blocking::RequestBuilder,
        also_ok: &[u16],
    ) -> Result<reqwest::blocking::Response> {
        let resp = req.send().map_err(|e| Hub::err(url, e))?;
        let status = resp.status();
        if status.is_success() || also_ok.contains(&status.as_u16()) {
            return Ok(resp);
        }
        let body = resp.text().unwrap_or_default();
        let message = serde_json::from_str::<Value>(&body)
            .ok()
            .and_then(|v| v["error"].as_str().map(String::from))
            .unwrap_or(body);
        Err(Hub::err(
            url,
            format!("{status}: {}", message.lines().next().unwrap_or("")),
        ))
    }

    fn json(&self, url: &str, req: reqwest::blocking::RequestBuilder) -> Result<Value> {
        self.send(url, req, &[])?.json().map_err(|e| Hub::err(url, e))
    }

    /// Uploads every file of `dir` to the dataset repository `repo` at `revision` in one commit
    /// (the repository is created if it does not exist).
    pub fn push(&self, dir: &Path, repo: &str, revision: &str) -> Result<PushReport> {
        let (namespace, name) = repo
            .split_once('/')
            .filter(|(ns, name)| !ns.is_empty() && !name.is_empty() && !name.contains('/'))
            .ok_or_else(|| Error::Usage(format!("--repo {repo}: expected namespace/name")))?;
        let files = repo_files(dir)?;
        if files.is_empty() {
            return Err(Error::Usage(format!("{}: no files to push", dir.display())));
        }

        let url = format!("{}/api/repos/create", self.endpoint);
        let body = json!({"type": "dataset", "name": name, "organization": namespace, "private": false});
        // 409: it exists already, which is what we want.
        self.send(&url, self.http.post(&url).json(&body), &[409])?;

        // Files are read as they go out, never whole: a snapshot's pages table is as large as
        // the memory it holds. The Hub decides from size and first bytes which go by LFS.
        let mut sized = Vec::new();
        for (rel, path) in &files {
            let size = std::fs::metadata(path).map_err(|e| Error::io(path, e))?.len();
            sized.push((rel.as_str(), path.as_path(), size));
        }
        let b64 = base64::engine::general_purpose::STANDARD;
        let url = format!("{}/api/datasets/{repo}/preupload/{revision}", self.endpoint);
        let mut listed = Vec::new();
        for &(rel, path, size) in &sized {
            let mut sample = Vec::with_capacity(512);
            std::fs::File::open(path)
                .and_then(|f| f.take(512).read_to_end(&mut sample))
                .map_err(|e| Error::io(path, e))?;
            listed.push(json!({"path": rel, "size": size, "sample": b64.encode(&sample)}));
        }
        let modes = self.json(&url, self.http.post(&url).json(&json!({ "files": listed })))?;
        let lfs = |rel: &str| {
            modes["files"]
                .as_array()
                .into_iter()
                .flatten()
                .any(|f| f["path"] == rel && f["uploadMode"] == "lfs")
        };

        let mut lfs_files = Vec::new();
        for &(rel, path, size) in sized.iter().filter(|(rel, _, _)| lfs(rel)) {
            lfs_files.push(LfsFile {
                rel,
                path,
                size,
                oid: sha256_of(path)?,
            });
        }
        if !lfs_files.is_empty() {
            self.lfs_upload(repo, &lfs_files)?;
        }

        let mut ndjson = json!({"key": "header", "value": {
            "summary": format!("memzinc: {} file(s)", files.len()),
            "description": "",
        }})
        .to_string();
        for &(rel, path, size) in &sized {
            let line = match lfs_files.iter().find(|f| f.rel == rel) {
                Some(f) => json!({"key": "lfsFile", "value": {
                    "path": rel, "algo": "sha256", "oid": f.oid, "size": size,
                }}),
                None => {
                    // A regular file: small, by the Hub's choice; it travels inline.
                    let bytes = std::fs::read(path).map_err(|e| Error::io(path, e))?;
                    json!({"key": "file", "value": {
                        "path": rel, "encoding": "base64", "content": b64.encode(bytes),
                    }})
                }
            };
            ndjson.push('\n');
            ndjson.push_str(&line.to_string());
        }
        let url = format!("{}/api/datasets/{repo}/commit/{revision}", self.endpoint);
        let commit = self.json(
            &url,
            self.http
                .post(&url)
                .header("Content-Type", "application/x-ndjson")
                .body(ndjson),
        )?;
        Ok(PushReport {
            files: files.len(),
            lfs_files: lfs_files.len(),
            commit: commit["commitOid"].as_str().unwrap_or_default().to_string(),
        })
    }

    /// The Git LFS batch API: ask where to put each object, upload the ones the server does not
    /// have ("basic": one PUT; "multipart": a PUT per part to the URLs the server signed, then
    /// the parts' ETags to its completion URL, as `huggingface_hub` does), and call `verify`
    /// where it asks for it.
    fn lfs_upload(&self, repo: &str, files: &[LfsFile]) -> Result<()> {
        let url = format!("{}/datasets/{repo}.git/info/lfs/objects/batch", self.endpoint);
        let body = json!({
            "operation": "upload",
            "transfers": ["basic", "multipart"],
            "hash_algo": "sha256",
            "objects": files.iter().map(|f| json!({"oid": f.oid, "size": f.size})).collect::<Vec<_>>(),
        });
        let batch = self.json(&url, lfs_json(self.http.post(&url)).body(body.to_string()))?;
        for object in batch["objects"].as_array().into_iter().flatten() {
            if let Some(e) = object.get("error") {
                return Err(Hub::err(&url, format!("LFS object {}: {e}", object["oid"])));
            }
            let Some(file) = files.iter().find(|f| object["oid"] == f.oid.as_str()) else {
                continue;
            };
            // No actions: the server has the object already.
            if let Some(upload) = object["actions"].get("upload") {
                let href = upload["href"].as_str().unwrap_or_default();
                match upload["header"].get("chunk_size") {
                    Some(chunk) => self.lfs_multipart(href, &upload["header"], chunk, file)?,
                    None => {
                        let put = with_action_headers(self.http.put(href), upload);
                        self.send_as_is(href, put.body(file.part(0, file.size)?), &[])?;
                    }
                }
            }
            if let Some(verify) = object["actions"].get("verify") {
                let href = verify["href"].as_str().unwrap_or_default();
                let post = with_action_headers(self.http.post(href), verify);
                let body = json!({"oid": file.oid, "size": file.size});
                self.send_as_is(href, post.json(&body), &[])?;
            }
        }
        Ok(())
    }

    /// One object by the "multipart" transfer: `header` holds `chunk_size` and the signed URL
    /// of each part by number; `completion` takes the parts' ETags.
    fn lfs_multipart(&self, completion: &str, header: &Value, chunk: &Value, file: &LfsFile) -> Result<()> {
        let bad = |why: &str| Hub::err(completion, format!("LFS object {}: {why}", file.oid));
        let chunk = chunk
            .as_str()
            .and_then(|c| c.parse::<u64>().ok())
            .or_else(|| chunk.as_u64())
            .filter(|&c| c > 0)
            .ok_or_else(|| bad("chunk_size is not a positive integer"))?;
        let mut parts: Vec<(u64, &str)> = header
            .as_object()
            .into_iter()
            .flatten()
            .filter_map(|(k, v)| Some((k.parse::<u64>().ok()?, v.as_str()?)))
            .collect();
        parts.sort();
        if parts.len() as u64 != file.size.div_ceil(chunk) || parts.iter().enumerate().any(|(i, p)| p.0 != i as u64 + 1)
        {
            return Err(bad(&format!(
                "{} part URLs for {} bytes in parts of {chunk}",
                parts.len(),
                file.size
            )));
        }
        let mut etags = Vec::new();
        for (number, href) in parts {
            let start = (number - 1) * chunk;
            let len = chunk.min(file.size - start);
            let resp = self.send_as_is(href, self.http.put(href).body(file.part(start, len)?), &[])?;
            let etag = resp
                .headers()
                .get("etag")
                .and_then(|e| e.to_str().ok())
                .filter(|e| !e.is_empty())
                .ok_or_else(|| bad(&format!("part {number} came back without an ETag")))?;
            etags.push(json!({"partNumber": number, "etag": etag}));
        }
        let body = json!({"oid": file.oid, "parts": etags});
        self.send_as_is(
            completion,
            lfs_json(self.http.post(completion)).body(body.to_string()),
            &[],
        )?;
        Ok(())
    }

    /// Downloads every file of the dataset repository `repo` at `revision` into `dir`; LFS
    /// files are checked against the SHA-256 the server names in their ETag. Files are staged
    /// beside `dir` and moved in only when all arrived: a failed pull changes nothing.
    pub fn pull(&self, repo: &str, revision: &str, dir: &Path) -> Result<PullReport> {
        let url = format!("{}/api/datasets/{repo}/revision/{revision}", self.endpoint);
        let info = self.json(&url, self.http.get(&url))?;
        let names: Vec<String> = info["siblings"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|s| s["rfilename"].as_str().map(String::from))
            .collect();
        if let Some(bad) = names.iter().find(|n| !safe_relative(n)) {
            return Err(Hub::err(&url, format!("refusing file name {bad:?}")));
        }
        let parent = match dir.parent() {
            Some(p) if !p.as_os_str().is_empty() => p,
            _ => Path::new("."),
        };
        std::fs::create_dir_all(parent).map_err(|e| Error::io(parent, e))?;
        let staging = tempfile::Builder::new()
            .prefix(".memzinc-pull-")
            .tempdir_in(parent)
            .map_err(|e| Error::io(parent, e))?;
        let mut bytes = 0;
        for name in &names {
            let url = format!("{}/datasets/{repo}/resolve/{revision}/{name}", self.endpoint);
            let mut resp = self.send(&url, self.http.get(&url), &[])?;
            let etag = resp
                .headers()
                .get("x-linked-etag")
                .or_else(|| resp.headers().get("etag"))
                .and_then(|v| v.to_str().ok())
                .map(|v| v.trim_matches('"').to_string());
            let path = staging.path().join(name);
            if let Some(parent) = path.parent() {
                std::fs::create_dir_all(parent).map_err(|e| Error::io(parent, e))?;
            }
            // Streamed to the staged file and hashed on the way: never whole in memory.
            let mut file = std::fs::File::create(&path).map_err(|e| Error::io(&path, e))?;
            let mut hasher = sha2::Sha256::new();
            let mut buf = vec![0u8; 1 << 20];
            loop {
                let n = resp.read(&mut buf).map_err(|e| Hub::err(&url, e))?;
                if n == 0 {
                    break;
                }
                hasher.update(&buf[..n]);
                std::io::Write::write_all(&mut file, &buf[..n]).map_err(|e| Error::io(&path, e))?;
                bytes += n as u64;
            }
            if let Some(etag) = etag.filter(|e| e.len() == 64 && e.bytes().all(|b| b.is_ascii_hexdigit())) {
                let got = hex::encode(hasher.finalize());
                if got != etag {
                    return Err(Hub::err(
                        &url,
                        format!("content has sha256 {got}, the server said {etag}"),
                    ));
                }
            }
        }
        for name in &names {
            let path = dir.join(name);
            if let Some(parent) = path.parent() {
                std::fs::create_dir_all(parent).map_err(|e| Error::io(parent, e))?;
            }
            let staged = staging.path().join(name);
            std::fs::File::open(&staged)
                .and_then(|f| f.sync_all())
                .map_err(|e| Error::io(&staged, e))?;
            std::fs::rename(&staged, &path).map_err(|e| Error::io(&path, e))?;
        }
        Ok(PullReport {
            files: names.len(),
            bytes,
            commit: info["sha"].as_str().unwrap_or_default().to_string(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pulled_names_stay_inside_the_directory() {
        assert!(safe_relative("data/pages/pages.parquet"));
        for bad in ["", "/etc/passwd", "../x", "data/../../x", "a//b", "./a"] {
            assert!(!safe_relative(bad), "{bad}");
        }
    }
}
