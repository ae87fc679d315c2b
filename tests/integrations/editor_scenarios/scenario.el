;;; scenario.el --- the test's steps, after the integration started the session  -*- lexical-binding: t; -*-
;; Wait for go-save, save a file (a heartbeat), report saved, wait for
;; go-quit; Emacs then exits (kill-emacs-hook: end).
(require (quote cl-lib))
(let ((dir (getenv "SCENARIO_DIR")))
  (cl-flet ((wait-for (name)
              (let ((n 0))
                (while (and (not (file-exists-p (expand-file-name name dir))) (< n 1500))
                  (sleep-for 0.01)
                  (setq n (1+ n)))
                (file-exists-p (expand-file-name name dir)))))
    (unless (wait-for "go-save") (kill-emacs 3))
    (find-file (expand-file-name "edited.txt" dir))
    (insert "hello")
    (save-buffer)
    (write-region "" nil (expand-file-name "saved" dir) nil 'silent)
    (unless (wait-for "go-quit") (kill-emacs 4))))
