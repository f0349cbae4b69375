-- Poll answers fit their poll, whoever writes them: a rating 1-5, a score 0-10, distinct option numbers
-- of the poll (one only unless it allows several), a ranking of distinct items (all of them once complete).
-- A member re-ranking builds the new order in `draft` while the finished ranking still counts.

ALTER TABLE poll_answers ADD COLUMN draft TEXT;   -- rank: JSON list of the new order so far; NULL: none

CREATE TRIGGER poll_answer_fits_on_insert BEFORE INSERT ON poll_answers
WHEN NOT EXISTS (
    SELECT 1 FROM polls p
    WHERE p.id = NEW.poll_id
      AND json_valid(NEW.answer)
      AND CASE p.kind
          WHEN 'rating' THEN NEW.complete = 1 AND json_type(NEW.answer) = 'integer'
                             AND json_extract(NEW.answer, '$') BETWEEN 1 AND 5
          WHEN 'nps' THEN NEW.complete = 1 AND json_type(NEW.answer) = 'integer'
                          AND json_extract(NEW.answer, '$') BETWEEN 0 AND 10
          WHEN 'choice' THEN NEW.complete = 1 AND json_type(NEW.answer) = 'array'
                             AND json_array_length(NEW.answer) BETWEEN 1
                                 AND CASE WHEN p.multi THEN json_array_length(p.options) ELSE 1 END
          WHEN 'rank' THEN json_type(NEW.answer) = 'array'
                           AND (NEW.complete = 0 OR json_array_length(NEW.answer) = json_array_length(p.options))
          ELSE 0 END
      AND (json_type(NEW.answer) != 'array' OR (
          NOT EXISTS (SELECT 1 FROM json_each(NEW.answer) e
                      WHERE e.type != 'integer' OR e.value < 0 OR e.value >= json_array_length(p.options))
          AND (SELECT count(DISTINCT e.value) FROM json_each(NEW.answer) e) = json_array_length(NEW.answer)))
      AND (NEW.draft IS NULL OR (
          p.kind = 'rank' AND NEW.complete = 1 AND json_valid(NEW.draft) AND json_type(NEW.draft) = 'array'
          AND json_array_length(NEW.draft) < json_array_length(p.options)
          AND NOT EXISTS (SELECT 1 FROM json_each(NEW.draft) e
                          WHERE e.type != 'integer' OR e.value < 0 OR e.value >= json_array_length(p.options))
          AND (SELECT count(DISTINCT e.value) FROM json_each(NEW.draft) e) = json_array_length(NEW.draft)))
)
BEGIN
    SELECT RAISE(ABORT, 'poll answer does not fit its poll');
END;

CREATE TRIGGER poll_answer_fits_on_update BEFORE UPDATE ON poll_answers
WHEN NOT EXISTS (
    SELECT 1 FROM polls p
    WHERE p.id = NEW.poll_id
      AND json_valid(NEW.answer)
      AND CASE p.kind
          WHEN 'rating' THEN NEW.complete = 1 AND json_type(NEW.answer) = 'integer'
                             AND json_extract(NEW.answer, '$') BETWEEN 1 AND 5
          WHEN 'nps' THEN NEW.complete = 1 AND json_type(NEW.answer) = 'integer'
                          AND json_extract(NEW.answer, '$') BETWEEN 0 AND 10
          WHEN 'choice' THEN NEW.complete = 1 AND json_type(NEW.answer) = 'array'
                             AND json_array_length(NEW.answer) BETWEEN 1
                                 AND CASE WHEN p.multi THEN json_array_length(p.options) ELSE 1 END
          WHEN 'rank' THEN json_type(NEW.answer) = 'array'
                           AND (NEW.complete = 0 OR json_array_length(NEW.answer) = json_array_length(p.options))
          ELSE 0 END
      AND (json_type(NEW.answer) != 'array' OR (
          NOT EXISTS (SELECT 1 FROM json_each(NEW.answer) e
                      WHERE e.type != 'integer' OR e.value < 0 OR e.value >= json_array_length(p.options))
          AND (SELECT count(DISTINCT e.value) FROM json_each(NEW.answer) e) = json_array_length(NEW.answer)))
      AND (NEW.draft IS NULL OR (
          p.kind = 'rank' AND NEW.complete = 1 AND json_valid(NEW.draft) AND json_type(NEW.draft) = 'array'
          AND json_array_length(NEW.draft) < json_array_length(p.options)
          AND NOT EXISTS (SELECT 1 FROM json_each(NEW.draft) e
                          WHERE e.type != 'integer' OR e.value < 0 OR e.value >= json_array_length(p.options))
          AND (SELECT count(DISTINCT e.value) FROM json_each(NEW.draft) e) = json_array_length(NEW.draft)))
)
BEGIN
    SELECT RAISE(ABORT, 'poll answer does not fit its poll');
END;
