//! Walks: files below a folder in byte-wise order of their paths, a batch per blocking call.

use super::*;

pub(super) enum Pending {
    Dir(String),
    File(FileInfo),
}

pub(super) struct Walk {
    pub(super) root: String,
    pub(super) start_after: Option<String>,
}

impl Walk {
    /// Files a blocking call gathers before handing them out.
    const BATCH: usize = 1024;

    /// Visits from the top of `stack` until a batch of files is found or nothing is left.
    pub(super) fn step(&self, inner: &Inner, mut stack: Vec<Pending>) -> io::Result<(Vec<FileInfo>, Vec<Pending>)> {
        let mut files = Vec::new();
        while files.len() < Self::BATCH {
            match stack.pop() {
                None => break,
                Some(Pending::File(info)) => files.push(info),
                Some(Pending::Dir(dir)) => {
                    let mut children = self.children(inner, &dir)?;
                    children.reverse();
                    stack.extend(children);
                }
            }
        }
        Ok((files, stack))
    }

    /// The entries of `dir` still to visit, in the order that makes file paths come out in
    /// lexical order: a directory sorts as its name followed by '/'. Folders are told apart
    /// by the directory entry's type, so only files cost a `stat`.
    pub(super) fn children(&self, inner: &Inner, dir: &str) -> io::Result<Vec<Pending>> {
        let entries = match fs::read_dir(inner.full(dir)) {
            Ok(entries) => entries,
            // A directory removed while walking, or a walk of a file: nothing below.
            Err(e) if is_missing(&e) => return Ok(Vec::new()),
            Err(e) => return Err(e),
        };
        let prefix = dir_prefix(dir);
        let mut children = Vec::new();
        for entry in entries {
            let entry = entry?;
            let Some(name) = entry.file_name().to_str().filter(|name| is_visible(name)).map(str::to_owned) else {
                continue;
            };
            let path = format!("{prefix}{name}");
            // A symbolic link counts as what it points to (a registry root may link its
            // `blobs` folder elsewhere).
            let (is_dir, linked) = match entry.file_type() {
                Ok(kind) if kind.is_symlink() => match fs::metadata(entry.path()) {
                    Ok(metadata) => (metadata.is_dir(), Some(metadata)),
                    Err(e) if e.kind() == io::ErrorKind::NotFound => continue,
                    Err(e) => return Err(e),
                },
                Ok(kind) => (kind.is_dir(), None),
                Err(e) if e.kind() == io::ErrorKind::NotFound => continue,
                Err(e) => return Err(e),
            };
            let sort_key = if is_dir { format!("{path}/") } else { path.clone() };
            if let Some(after) = &self.start_after {
                // Skip what sorts entirely at or before `start_after`.
                let skip = if is_dir {
                    sort_key.as_str() <= after.as_str() && !after.starts_with(&sort_key)
                } else {
                    path.as_str() <= after.as_str()
                };
                if skip {
                    continue;
                }
            }
            let pending = if is_dir {
                Pending::Dir(path)
            } else {
                match linked.map_or_else(|| entry.metadata(), Ok) {
                    Ok(metadata) => Pending::File(file_info(path, &metadata)),
                    Err(e) if e.kind() == io::ErrorKind::NotFound => continue,
                    Err(e) => return Err(e),
                }
            };
            children.push((sort_key, pending));
        }
        children.sort_unstable_by(|a, b| a.0.cmp(&b.0));
        Ok(children.into_iter().map(|(_, pending)| pending).collect())
    }
}
