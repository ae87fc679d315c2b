;;; session-agent.el --- Sessions for session-agent, driven from Emacs  -*- lexical-binding: t; -*-

;; Version: 0.1.0
;; Package-Requires: ((emacs "27.1"))
;; Keywords: tools

;;; Commentary:

;; A session per Emacs run, driven through session-agent's current-session
;; file: no process is spawned, nothing blocks.
;;
;;   startup (emacs-startup-hook)   -> write `start': owner=<emacs's pid>,
;;                                     tool=emacs, cwd=<its default directory>
;;   after-save-hook, focus gained  -> touch the file (a heartbeat)
;;   kill-emacs-hook                -> write `end'
;;
;; Loading the file turns on `session-agent-mode' (a global minor mode);
;; put (load "/path/to/session-agent.el") in your init file, or try it with
;; `emacs -Q -l session-agent.el'.  Loaded after start-up, it starts the
;; session at once.  Each Emacs has its own scope, `emacs-<its pid>', so
;; several run side by side, each with its session: the file is
;; DATA_DIR/scopes/emacs-<pid>/current_session, where DATA_DIR is
;; $SESSION_AGENT_DATA_DIR, else ${XDG_DATA_HOME:-~/.local/share}/session-agent.
;; If DATA_DIR does not exist (the agent was never run) nothing is
;; written.  If no daemon runs, the last word written waits in the file and
;; is applied by the next `session-agent' command or daemon start.  The
;; session is bound to this Emacs: if it crashes or is killed (no
;; kill-emacs-hook), the agent abandons the session (`owner_exited').

;;; Code:

(defgroup session-agent nil
  "Drive session-agent sessions from Emacs."
  :group 'tools)

(defun session-agent--data-dir ()
  "The agent's data dir, found as the agent finds it."
  (let ((dir (getenv "SESSION_AGENT_DATA_DIR"))
        (base (getenv "XDG_DATA_HOME")))
    (cond ((and dir (not (equal dir ""))) dir)
          ((and base (not (equal base ""))) (expand-file-name "session-agent" base))
          (t (expand-file-name "~/.local/share/session-agent")))))

(defun session-agent--scope-dir ()
  "This Emacs's scope directory."
  (expand-file-name (format "scopes/emacs-%d" (emacs-pid)) (session-agent--data-dir)))

(defun session-agent--file ()
  (expand-file-name "current_session" (session-agent--scope-dir)))

(defun session-agent--write (lines)
  "Write LINES (a list of strings) into the current file atomically (temp file, fsync, rename),
making the scope's directory (private) if it is missing."
  (let ((dir (session-agent--scope-dir)))
    (when (file-directory-p (session-agent--data-dir))
      (unless (file-directory-p dir)
        (with-file-modes #o700 (ignore-errors (make-directory dir t))))
      (let ((temp (expand-file-name (format ".edit-emacs-%d" (emacs-pid)) dir))
            (coding-system-for-write 'utf-8-unix)
            (write-region-inhibit-fsync nil))
        (condition-case nil
            (progn
              (with-file-modes #o600
                (write-region (mapconcat (lambda (line) (concat line "\n")) lines "")
                              nil temp nil 'silent))
              (rename-file temp (session-agent--file) t))
          (error (ignore-errors (delete-file temp))))))))

(defun session-agent-start ()
  "Ask the agent to start a session (kept if one is active).
It records this Emacs as its owner (a crash ends it), the tool and the
default directory -- unless that cannot be one line of text (the agent
would refuse the whole start)."
  (interactive)
  (let ((cwd (directory-file-name (expand-file-name default-directory))))
    (ignore-errors
      (session-agent--write
       (append (list "start" (format "owner=%d" (emacs-pid)) "tool=emacs")
               (unless (string-match-p "[[:cntrl:]]" cwd)
                 (list (concat "cwd=" cwd))))))))

(defun session-agent-end ()
  "Ask the agent to end the active session."
  (interactive)
  (ignore-errors (session-agent--write '("end"))))

(defun session-agent-touch ()
  "A heartbeat: set the current file's times to now, if it is a regular file."
  (ignore-errors
    (let ((file (session-agent--file)))
      ;; file-attributes does not follow symlinks: nil type is a regular file.
      (when (and (file-exists-p file) (null (file-attribute-type (file-attributes file))))
        (set-file-times file)))))

(defun session-agent--focus-changed ()
  (when (frame-focus-state)
    (session-agent-touch)))

;;;###autoload
(define-minor-mode session-agent-mode
  "Start a session-agent session with Emacs, heartbeat on save, end on exit."
  :global t
  (if session-agent-mode
      (progn
        (add-hook 'after-save-hook #'session-agent-touch)
        (add-hook 'kill-emacs-hook #'session-agent-end)
        (add-function :after after-focus-change-function #'session-agent--focus-changed)
        (if after-init-time
            (session-agent-start)
          (add-hook 'emacs-startup-hook #'session-agent-start)))
    (remove-hook 'after-save-hook #'session-agent-touch)
    (remove-hook 'kill-emacs-hook #'session-agent-end)
    (remove-hook 'emacs-startup-hook #'session-agent-start)
    (remove-function after-focus-change-function #'session-agent--focus-changed)))

(session-agent-mode 1)

(provide 'session-agent)
;;; session-agent.el ends here
