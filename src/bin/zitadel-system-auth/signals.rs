//! Signals: SIGTERM or Ctrl-C stops a server after the requests in flight are
//! answered; SIGHUP reloads the keys, off the async runtime.

use std::{future::Future, io};

use zitadel_system_auth::SystemAuth;

/// Starts listening for Ctrl-C (and SIGTERM on Unix) at once, so that a signal
/// arriving before the server runs is not lost; the future resolves on the first.
pub fn shutdown() -> io::Result<impl Future<Output = ()> + Send + 'static> {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        let mut interrupt = signal(SignalKind::interrupt())?;
        let mut terminate = signal(SignalKind::terminate())?;
        Ok(async move {
            tokio::select! {
                _ = interrupt.recv() => {}
                _ = terminate.recv() => {}
            }
        })
    }
    #[cfg(not(unix))]
    {
        Ok(async {
            if tokio::signal::ctrl_c().await.is_err() {
                std::future::pending::<()>().await;
            }
        })
    }
}

/// Reloads the keys on SIGHUP, on tokio's blocking pool (a reload reads files).
pub fn reload_on_hangup(auth: SystemAuth) -> io::Result<()> {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        let mut hangups = signal(SignalKind::hangup())?;
        tokio::spawn(async move {
            while hangups.recv().await.is_some() {
                let auth = auth.clone();
                let outcome = tokio::task::spawn_blocking(move || auth.reload()).await;
                match outcome {
                    Ok(Ok(report)) => eprintln!(
                        "SIGHUP: reloaded, generation {}{}",
                        report.generation,
                        if report.changed {
                            ""
                        } else {
                            " (nothing changed)"
                        }
                    ),
                    Ok(Err(error)) => {
                        eprintln!("SIGHUP: reload failed, keeping the last good keys: {error}")
                    }
                    Err(error) => eprintln!("SIGHUP: the reload did not finish: {error}"),
                }
            }
        });
    }
    #[cfg(not(unix))]
    drop(auth);
    Ok(())
}
