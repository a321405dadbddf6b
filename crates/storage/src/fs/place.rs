//! Placing files: renames and links into place, created folders made durable, and emptied
//! folders removed.

use super::*;

impl Inner {
    pub(super) fn full(&self, path: &str) -> PathBuf {
        if path == "/" { self.root.clone() } else { self.root.join(&path[1..]) }
    }

    pub(super) fn staged(&self, path: &str) -> PathBuf {
        self.root.join(STAGING_DIR).join("files").join(&path[1..])
    }

    pub(super) fn temp_file(&self) -> io::Result<(PathBuf, File)> {
        static COUNTER: AtomicU64 = AtomicU64::new(0);
        let dir = self.root.join(STAGING_DIR).join("tmp");
        fs::create_dir_all(&dir)?;
        let nanos = SystemTime::now().duration_since(SystemTime::UNIX_EPOCH).unwrap_or_default().as_nanos();
        let name = format!("{}-{}-{nanos}", std::process::id(), COUNTER.fetch_add(1, Ordering::Relaxed));
        let path = dir.join(name);
        let file = OpenOptions::new().write(true).create_new(true).open(&path)?;
        Ok((path, file))
    }

    /// Renames `from` to `to`, creating `to`'s directory; retried when a concurrent removal of
    /// an emptied directory takes that directory away in between.
    ///
    /// Durable when it returns: the target's folder is synced, and so is the folder holding
    /// each folder the rename created (a new `blobs/sha256/ab/<hex>/` is an entry in `ab/`,
    /// which a power loss could otherwise lose with the blob in it).
    pub(super) fn rename_into_place(&self, from: &Path, to: &Path) -> io::Result<()> {
        let created = self.place(from, to)?;
        self.make_durable(to, created)
    }

    /// Renames `from` to `to`, creating the target's folder when missing, without waiting for
    /// the rename to be durable. The folders it created are noted, for the first durable
    /// write below them to sync.
    pub(super) fn move_into_place(&self, from: &Path, to: &Path) -> io::Result<()> {
        let created = self.place(from, to)?;
        self.note_unsynced(created);
        Ok(())
    }

    /// Syncs the folder of `to`, which a rename or link just wrote, and the folders holding
    /// each folder on its way that is not durable yet: those `created` for it, and those a
    /// scratch write created before (a durable file is no more durable than its path).
    pub(super) fn make_durable(&self, to: &Path, created: Vec<PathBuf>) -> io::Result<()> {
        let dir = to.parent().unwrap_or(&self.root);
        // A folder another call emptied and removed meanwhile (a collection took the file away
        // as soon as it was in place) has nothing left to make durable.
        let sync_dir = |dir: &Path| match sync_dir(dir) {
            Err(e) if is_missing(&e) => Ok(()),
            other => other,
        };
        sync_dir(dir)?;
        let mut pending = created;
        {
            let mut unsynced = self.unsynced.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
            if !unsynced.is_empty() {
                for ancestor in dir.ancestors().take_while(|a| *a != self.root && a.starts_with(&self.root)) {
                    if unsynced.remove(ancestor) && !pending.iter().any(|p| p == ancestor) {
                        pending.push(ancestor.to_path_buf());
                    }
                }
            }
        }
        for folder in &pending {
            sync_dir(folder.parent().unwrap_or(&self.root))?;
        }
        Ok(())
    }

    /// Notes folders a scratch write created, for [`make_durable`](Self::make_durable). Past
    /// [`MAX_UNSYNCED`] (folders of finished uploads are never written below again) the
    /// oldest notes are synced and dropped, so the notes stay small.
    pub(super) fn note_unsynced(&self, created: Vec<PathBuf>) {
        if created.is_empty() {
            return;
        }
        let staging = self.root.join(STAGING_DIR);
        let mut unsynced = self.unsynced.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        unsynced.extend(created.into_iter().filter(|dir| !dir.starts_with(&staging)));
        if unsynced.len() > MAX_UNSYNCED {
            for folder in unsynced.drain() {
                // A folder removed since needs nothing.
                let _ = sync_dir(folder.parent().unwrap_or(&self.root));
            }
        }
    }

    /// Renames `from` to `to`, creating the target's folder when missing; the folders it
    /// created, outermost first. Where `to` is on another filesystem than `from` (a folder of
    /// the root mounted from another disk, or a symlink to one), `from` is copied beside `to`
    /// first, synced, and renamed from there.
    pub(super) fn place(&self, from: &Path, to: &Path) -> io::Result<Vec<PathBuf>> {
        match self.place_within(from, to) {
            Err(e) if e.kind() == io::ErrorKind::CrossesDevices => {
                let (copy, mut created) = self.copy_beside(from, to)?;
                match self.place_within(&copy, to) {
                    Ok(more) => created.extend(more),
                    Err(e) => {
                        let _ = fs::remove_file(&copy);
                        return Err(e);
                    }
                }
                match fs::remove_file(from) {
                    Err(e) if !is_missing(&e) => Err(e),
                    _ => Ok(created),
                }
            }
            other => other,
        }
    }

    /// A synced copy of `from` in `to`'s folder (created when missing), under a name no
    /// driver path can name; the folders created for it.
    pub(super) fn copy_beside(&self, from: &Path, to: &Path) -> io::Result<(PathBuf, Vec<PathBuf>)> {
        static COUNTER: AtomicU64 = AtomicU64::new(0);
        let dir = to.parent().unwrap_or(&self.root);
        let mut created = Vec::new();
        create_dirs(dir, &self.root, &mut created)?;
        let copy =
            dir.join(format!("{STAGING_DIR}-{}-{}", std::process::id(), COUNTER.fetch_add(1, Ordering::Relaxed)));
        let copied = (|| {
            let mut source = File::open(from)?;
            let mut target = OpenOptions::new().write(true).create_new(true).open(&copy)?;
            io::copy(&mut source, &mut target)?;
            target.sync_all()
        })();
        match copied {
            Ok(()) => Ok((copy, created)),
            Err(e) => {
                let _ = fs::remove_file(&copy);
                Err(e)
            }
        }
    }

    /// [`place`](Self::place) on one filesystem.
    pub(super) fn place_within(&self, from: &Path, to: &Path) -> io::Result<Vec<PathBuf>> {
        let dir = to.parent().unwrap_or(&self.root);
        let mut created = Vec::new();
        let mut attempts = 0;
        loop {
            match fs::rename(from, to) {
                Ok(()) => return Ok(created),
                // The target's folder is missing, or a task removing it emptied took it away
                // (even from under create_dir_all): create it and try again.
                Err(e) if e.kind() == io::ErrorKind::NotFound && attempts < 10 && from.exists() => {
                    attempts += 1;
                    match create_dirs(dir, &self.root, &mut created) {
                        Err(e) if e.kind() != io::ErrorKind::NotFound => return Err(e),
                        _ => {}
                    }
                }
                Err(e) => return Err(e),
            }
        }
    }

    /// Places `temp` at `to` only when nothing is there, through a hard link (which never
    /// replaces), creating `to`'s folder; `temp` is removed either way.
    pub(super) fn link_into_place(&self, temp: &Path, to: &Path, durable: bool) -> io::Result<()> {
        let dir = to.parent().unwrap_or(&self.root);
        let mut created = Vec::new();
        let mut attempts = 0;
        // On another filesystem than the staging area, a copy beside the target is linked.
        let mut source = temp.to_path_buf();
        let linked = loop {
            match fs::hard_link(&source, to) {
                Err(e) if e.kind() == io::ErrorKind::CrossesDevices && source == temp => {
                    match self.copy_beside(temp, to) {
                        Ok((copy, more)) => {
                            created.extend(more);
                            source = copy;
                        }
                        Err(e) => break Err(e),
                    }
                }
                Err(e) if e.kind() == io::ErrorKind::NotFound && attempts < 10 => {
                    attempts += 1;
                    match create_dirs(dir, &self.root, &mut created) {
                        Err(e) if e.kind() != io::ErrorKind::NotFound => break Err(e),
                        _ => {}
                    }
                }
                result => break result,
            }
        };
        let _ = fs::remove_file(temp);
        if source != temp {
            let _ = fs::remove_file(&source);
        }
        linked?;
        if durable {
            self.make_durable(to, created)
        } else {
            self.note_unsynced(created);
            Ok(())
        }
    }

    /// Replaces the file at `target` with `content` if its content still has version
    /// `expected`. Writers of one path take turns through an exclusive lock on the file they
    /// found there; one that finds the path replaced while it waited looks again.
    pub(super) fn replace_if_matches(
        &self,
        target: &Path,
        content: &[u8],
        expected: &Version,
        durable: bool,
    ) -> io::Result<Option<Version>> {
        use std::os::unix::fs::MetadataExt;
        loop {
            let mut file = match File::open(target) {
                Ok(file) => file,
                Err(e) if is_missing(&e) => return Ok(None),
                Err(e) => return Err(e),
            };
            file.lock()?;
            let held = file.metadata()?;
            match fs::metadata(target) {
                Ok(now) if now.ino() == held.ino() && now.dev() == held.dev() => {}
                Ok(_) => continue,
                Err(e) if is_missing(&e) => return Ok(None),
                Err(e) => return Err(e),
            }
            let mut current = Vec::new();
            file.read_to_end(&mut current)?;
            if content_version(&current) != *expected {
                return Ok(None);
            }
            let (temp, mut out) = self.temp_file()?;
            let written = out.write_all(content).and_then(|()| if durable { out.sync_all() } else { Ok(()) });
            drop(out);
            let placed = written.and_then(|()| {
                if durable { self.rename_into_place(&temp, target) } else { self.move_into_place(&temp, target) }
            });
            if placed.is_err() {
                let _ = fs::remove_file(&temp);
            }
            placed?;
            // The lock goes with `file`, now that the new content is in place.
            return Ok(Some(content_version(content)));
        }
    }

    /// Deletes a file or folder, and what is staged under its path; whether anything was
    /// there. Not synced: a deletion undone by a crash loses nothing (Distribution does not
    /// sync deletions either), and a sync would cost a disk flush each.
    pub(super) fn remove(&self, path: &str) -> io::Result<bool> {
        let mut found = false;
        for (target, staged) in [(self.full(path), false), (self.staged(path), true)] {
            let removed = match fs::symlink_metadata(&target) {
                // The staging area keeps empty folders: only staged files count as found.
                Ok(metadata) if metadata.is_dir() => {
                    let held = !staged || holds_files(&target)?;
                    fs::remove_dir_all(&target).map(|()| held)
                }
                Ok(_) => fs::remove_file(&target).map(|()| true),
                Err(e) => Err(e),
            };
            match removed {
                Ok(held) => {
                    found |= held;
                    if let Some(dir) = target.parent() {
                        self.prune(dir);
                    }
                }
                Err(e) if e.kind() == io::ErrorKind::NotFound => {}
                Err(e) => return Err(e),
            }
        }
        Ok(found)
    }

    /// Moves a file without syncing; `false` when there is no file at `from`.
    pub(super) fn move_file(&self, from: &str, to: &str) -> io::Result<bool> {
        let source = self.full(from);
        match fs::symlink_metadata(&source) {
            Ok(metadata) if !metadata.is_dir() => {}
            Ok(_) => return Ok(false),
            Err(e) if is_missing(&e) => return Ok(false),
            Err(e) => return Err(e),
        }
        match self.move_into_place(&source, &self.full(to)) {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(false),
            Err(e) => return Err(e),
        }
        if let Some(dir) = source.parent() {
            self.prune(dir);
        }
        Ok(true)
    }

    /// Creates (or truncates) `path`, creating its directory; retried when a concurrent
    /// removal of an emptied directory takes that directory away in between.
    pub(super) fn create_in_place(&self, path: &Path) -> io::Result<File> {
        let dir = path.parent().unwrap_or(&self.root);
        let mut attempts = 0;
        loop {
            if let Err(e) = fs::create_dir_all(dir) {
                if e.kind() == io::ErrorKind::NotFound && attempts < 10 {
                    attempts += 1;
                    continue;
                }
                return Err(e);
            }
            match OpenOptions::new().write(true).create(true).truncate(true).open(path) {
                Err(e) if e.kind() == io::ErrorKind::NotFound && attempts < 10 => attempts += 1,
                // An empty folder the staging area kept where this file goes: it yields.
                Err(e) if e.kind() == io::ErrorKind::IsADirectory && attempts < 10 => {
                    attempts += 1;
                    fs::remove_dir(path).map_err(|_| e)?;
                }
                result => return result,
            }
        }
    }

    /// Removes the empty directories from `dir` up to the root. Below the staging root only
    /// `dir` itself goes: the folders above it (a repository's `_uploads`, say) are kept for
    /// the next write, which would otherwise create the whole chain again; there are no more
    /// of them than folders written to.
    pub(super) fn prune(&self, mut dir: &Path) {
        let staging_files = self.root.join(STAGING_DIR).join("files");
        let staged = dir.starts_with(&staging_files);
        while dir != self.root && dir != staging_files && dir.starts_with(&self.root) {
            if fs::remove_dir(dir).is_err() || staged {
                break;
            }
            match dir.parent() {
                Some(up) => dir = up,
                None => break,
            }
        }
    }
}

/// Whether a folder has a file anywhere below it.
pub(super) fn holds_files(dir: &Path) -> io::Result<bool> {
    for entry in fs::read_dir(dir)? {
        let entry = entry?;
        if !entry.file_type()?.is_dir() || holds_files(&entry.path())? {
            return Ok(true);
        }
    }
    Ok(false)
}

/// The version of a file's content: a digest of it, so that it differs whenever the content
/// does, in every process.
pub(super) fn content_version(content: &[u8]) -> Version {
    use sha2::Digest as _;
    let digest = sha2::Sha256::digest(content);
    Version::new(digest[..16].iter().map(|byte| format!("{byte:02x}")).collect::<String>())
}

/// Creates `dir` and its missing parents up to `root`, noting each folder it created
/// (outermost first) in `created`.
pub(super) fn create_dirs(dir: &Path, root: &Path, created: &mut Vec<PathBuf>) -> io::Result<()> {
    let mut missing = Vec::new();
    let mut at = dir;
    while at != root && !at.exists() {
        missing.push(at.to_path_buf());
        match at.parent() {
            Some(up) => at = up,
            None => break,
        }
    }
    for folder in missing.into_iter().rev() {
        match fs::create_dir(&folder) {
            Ok(()) => created.push(folder),
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {}
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

pub(super) fn sync_dir(dir: &Path) -> io::Result<()> {
    File::open(dir)?.sync_all()
}

pub(super) fn is_visible(name: &str) -> bool {
    validate_path(NAME, &format!("/{name}")).is_ok()
}
