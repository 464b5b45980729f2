//! Movies for a local network: sample movies ffmpeg makes from its test sources (or files
//! at hand), ingested the way `rivulet-tracker ingest` does.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use rivulet_tracker::data_dir::DataDir;
use rivulet_tracker::ingest::{IngestRequest, ingest};
use rivulet_tracker::sample::make_sample_movie;

use crate::LocalNetError;

/// Where a movie's media comes from.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum MovieSource {
    /// ffmpeg's test pattern with a tone, `seconds` long at `width`×`height`.
    Sample {
        seconds: u32,
        width: u32,
        height: u32,
    },
    /// A media file ffmpeg can read.
    File(PathBuf),
}

/// A movie to put in the catalogue.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MovieSpec {
    /// Its id (`rivulet://watch/<id>`).
    pub id: String,
    /// Its title in the catalogue.
    pub title: String,
    /// What it costs, in points.
    pub price: u64,
    /// Its media.
    pub source: MovieSource,
}

impl MovieSpec {
    /// A free 640×360 sample movie of `seconds` titled "Movie <id>".
    pub fn sample(id: impl Into<String>, seconds: u32) -> MovieSpec {
        let id = id.into();
        MovieSpec {
            title: format!("Movie {id}"),
            id,
            price: 0,
            source: MovieSource::Sample {
                seconds,
                width: 640,
                height: 360,
            },
        }
    }

    /// A free movie ingested from `file`, titled "Movie <id>".
    pub fn file(id: impl Into<String>, file: impl Into<PathBuf>) -> MovieSpec {
        let id = id.into();
        MovieSpec {
            title: format!("Movie {id}"),
            id,
            price: 0,
            source: MovieSource::File(file.into()),
        }
    }

    /// Costs `points`.
    pub fn price(mut self, points: u64) -> MovieSpec {
        self.price = points;
        self
    }

    /// Titled `title`.
    pub fn title(mut self, title: impl Into<String>) -> MovieSpec {
        self.title = title.into();
        self
    }

    /// A sample movie at `width`×`height` (no effect on a file).
    pub fn size(mut self, width: u32, height: u32) -> MovieSpec {
        if let MovieSource::Sample { seconds, .. } = self.source {
            self.source = MovieSource::Sample {
                seconds,
                width,
                height,
            };
        }
        self
    }
}

/// Ingests every movie of `movies` whose id the catalogue in `data` lacks, making sample
/// media in `work` (one clip per length and size, removed afterwards). Blocking: ffmpeg runs.
pub fn ingest_movies(data: &Path, work: &Path, movies: &[MovieSpec]) -> Result<(), LocalNetError> {
    let data = DataDir::create(data).map_err(|source| LocalNetError::DataDir {
        path: data.to_owned(),
        source,
    })?;
    make_all(&data, work, movies)
}

pub(crate) fn make_all(
    data: &DataDir,
    work: &Path,
    movies: &[MovieSpec],
) -> Result<(), LocalNetError> {
    let missing: Vec<&MovieSpec> = movies
        .iter()
        .filter(|m| !data.video_dir(&m.id).exists())
        .collect();
    if missing.is_empty() {
        return Ok(());
    }
    std::fs::create_dir_all(work).map_err(|source| LocalNetError::Io {
        what: "making the folder",
        path: work.to_owned(),
        source,
    })?;
    let mut clips: HashMap<(u32, u32, u32), PathBuf> = HashMap::new();
    for movie in missing {
        let input = match &movie.source {
            MovieSource::File(path) => path.clone(),
            &MovieSource::Sample {
                seconds,
                width,
                height,
            } => match clips.get(&(seconds, width, height)) {
                Some(clip) => clip.clone(),
                None => {
                    let clip = work.join(format!("sample-{seconds}s-{width}x{height}.mp4"));
                    make_sample_movie(&clip, seconds, width, height).map_err(|e| {
                        LocalNetError::Sample {
                            id: movie.id.clone(),
                            source: e.into(),
                        }
                    })?;
                    clips.insert((seconds, width, height), clip.clone());
                    clip
                }
            },
        };
        let request = IngestRequest {
            input,
            title: movie.title.clone(),
            price: movie.price,
            id: Some(movie.id.clone()),
        };
        ingest(data, &request).map_err(|e| LocalNetError::Ingest {
            id: movie.id.clone(),
            source: e.into(),
        })?;
    }
    for clip in clips.values() {
        let _ = std::fs::remove_file(clip);
    }
    let _ = std::fs::remove_dir(work);
    Ok(())
}
